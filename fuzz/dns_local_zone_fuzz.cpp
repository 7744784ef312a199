// Fuzz: DNS queries against a local zone holding a few names (two VMs and the host). Any bytes are
// answered without crashing; a reply must parse with wire::dns::message::parse, keep the query's
// ID, be a response with AA and one question — the query's own, byte for byte — and fit in
// max_reply_len; forward and drop write nothing. The same query into a buffer one byte too short
// for the reply must be refused, not overflow it (ASan watches the exact-size buffers).
#include <ankanet/dns/local_zone.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace ankanet;
namespace wdns = wire::dns;

void require(bool ok) {
    if (!ok) std::abort();
}

dns::local_zone make_zone() {
    auto zone = dns::local_zone::make({});
    require(zone.has_value());
    require(zone->set_name(wire::ipv4_address{192, 168, 64, 2}, "vm1") == dns::name_status::added);
    require(zone->set_name(wire::ipv4_address{192, 168, 64, 3}, "Build-Box") == dns::name_status::added);
    require(zone->set_name(wire::ipv4_address{192, 168, 64, 4}, std::string(63, 'x')) == dns::name_status::added);
    return std::move(*zone);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static dns::local_zone zone = make_zone();
    const std::vector<std::byte> query(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);

    std::vector<std::byte> reply(dns::max_reply_len);
    const auto verdict = zone.answer(query, reply);
    if (verdict.disposition != dns::zone_disposition::reply) {
        require(verdict.length == 0);
        return 0;
    }
    require(verdict.length >= wdns::header_len && verdict.length <= dns::max_reply_len);
    const wire::const_bytes out = wire::const_bytes{reply}.first(verdict.length);
    const auto m = wdns::message::parse(out);
    require(m.has_value());
    require(m->size() == verdict.length);
    const auto header = m->header();
    const wdns::packet<wire::const_bytes> asked{query};
    require(header.id() == asked.id());
    require(header.qr() && header.aa() && header.qdcount() == 1);
    require(header.rd() == asked.rd() && header.cd() == asked.cd());
    require(header.rcode() == verdict.rcode);
    const auto q = wdns::first_question(query);
    const auto echoed = m->first_question();
    require(q.has_value() && echoed.has_value());
    require(echoed->qtype == q->qtype && echoed->qclass == q->qclass && echoed->qname.decode() == q->qname.decode());
    require(m->opt().has_value());

    // The same reply into an exact-size buffer is written whole; one byte less is refused.
    std::vector<std::byte> exact(verdict.length);
    const auto again = zone.answer(query, exact);
    require(again == verdict && std::equal(exact.begin(), exact.end(), out.begin()));
    std::vector<std::byte> short_buffer(verdict.length - 1);
    require(zone.answer(query, short_buffer).disposition == dns::zone_disposition::drop);
    return 0;
}
