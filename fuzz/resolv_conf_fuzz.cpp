// Fuzz: resolv.conf text. Any bytes parse without crashing; on success every server is well-formed
// (lines in file order, the first three marked as glibc's, a scope only on IPv6 and of a legal
// form) and printing the servers back as nameserver lines parses to the same servers; on failure
// the error is one of the two documented ones.
#include <ankanet/dns/resolv_conf.hpp>

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using ankanet::dns::resolv_conf;
using ankanet::dns::upstream_server;

void require(bool ok) {
    if (!ok) std::abort();
}

std::string server_text(const upstream_server& s) {
    if (s.is_ipv4()) {
        const auto o = s.ipv4.octets();
        return std::to_string(o[0]) + "." + std::to_string(o[1]) + "." + std::to_string(o[2]) + "." + std::to_string(o[3]);
    }
    std::array<char, INET6_ADDRSTRLEN> text{};
    require(::inet_ntop(AF_INET6, s.ipv6.data(), text.data(), text.size()) != nullptr);
    std::string out{text.data()};
    if (!s.scope.empty()) out += "%" + s.scope;
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text{reinterpret_cast<const char*>(data), size};
    const auto conf = resolv_conf::parse(text);
    if (!conf) {
        require(conf.error() == ankanet::errc::unsupported || conf.error() == ankanet::errc::bad_address_text);
        return 0;
    }
    require(!conf->servers.empty());
    std::size_t last_line = 0;
    std::string printed;
    for (std::size_t i = 0; i < conf->servers.size(); ++i) {
        const auto& s = conf->servers[i];
        require(s.line > last_line && s.line <= size);
        last_line = s.line;
        require(s.within_glibc_limit == (i < ankanet::dns::glibc_max_nameservers));
        require(s.port == ankanet::dns::default_dns_port);
        require(s.is_ipv6() || s.scope.empty());
        require(s.scope.size() <= 15);
        printed += "nameserver " + server_text(s) + "\n";
    }
    for (const auto& skipped : conf->skipped) require(skipped.line >= 1 && skipped.line <= size && !skipped.why.empty());
    require(conf->glibc_server_count() <= ankanet::dns::glibc_max_nameservers);

    const auto again = resolv_conf::parse(printed);
    require(again.has_value() && again->servers.size() == conf->servers.size() && again->skipped.empty());
    for (std::size_t i = 0; i < conf->servers.size(); ++i) {
        auto expected = conf->servers[i];
        expected.line = i + 1;
        require(again->servers[i] == expected);
    }
    require(again->has_loopback() == conf->has_loopback());
    return 0;
}
