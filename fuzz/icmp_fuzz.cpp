// Fuzzes the ICMP view, its quoted-datagram view and repr: parse -> emit -> parse gives the same
// repr, and NAT rewrites of a quote keep the quoted IPv4 checksum valid when it was.
#include <ankanet/wire/icmp.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

using namespace ankanet::wire;

namespace {

/// Where the views' reads go, so the compiler cannot drop them.
volatile std::size_t sink = 0;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

template <class Quote>
std::size_t touch_quote(const Quote& q) {
    std::size_t sum = q.version() + q.header_length() + q.total_length() + q.identification() + q.fragment_offset() +
                      q.ttl() + q.protocol() + q.checksum() + q.source().to_u32() + q.destination().to_u32() +
                      (q.is_complete() ? 1u : 0u) + (q.more_fragments() ? 1u : 0u) + (q.dont_fragment() ? 1u : 0u);
    for (std::byte b : q.header()) sum += static_cast<std::uint8_t>(b);
    for (std::byte b : q.payload()) sum += static_cast<std::uint8_t>(b);
    if (const auto ports = q.ports()) sum += ports->source + ports->destination;
    if (const auto id = q.echo_identifier()) sum += *id;
    check(q.header_length() + q.payload().size() <= q.bytes().size());
    return sum;
}

/// Rewrites a quote in a copy, as a NAT does, and checks the checksums it maintains.
void rewrite(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
    icmp::packet<mutable_bytes> p{mutable_bytes{bytes}};
    if (p.check_len()) return;
    if (p.type() == icmp::type::echo_request || p.type() == icmp::type::echo_reply) {
        const bool valid = p.verify_checksum();
        // An all-zero message sums to +0, which incremental arithmetic cannot tell from -0 (the
        // sum of a valid message): the one input where validity may change. It never occurs
        // with a non-zero word, i.e. in any message with a non-zero identifier or data.
        const bool all_zero = std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
        p.rewrite_identifier(static_cast<std::uint16_t>(p.sequence() ^ 0xa5a5u));
        if (!all_zero) check(p.verify_checksum() == valid);
        return;
    }
    auto quote = p.quoted();
    if (!quote) return;
    const bool header_valid = checksum::internet(quote->header()) == 0;
    quote->rewrite_source(ipv4_address{quote->destination().to_u32() ^ 0x0f0f0f0fu});
    quote->rewrite_destination(ipv4_address{0xc0a84001u});
    const bool had_ports = quote->ports().has_value();
    check(quote->rewrite_source_port(4242) == had_ports);
    check(quote->rewrite_destination_port(53) == had_ports);
    if (had_ports) check(*quote->ports() == icmp::transport_ports{4242, 53});
    const bool had_echo = quote->echo_identifier().has_value();
    check(quote->rewrite_echo_identifier(0x1234) == had_echo);
    check((checksum::internet(quote->header()) == 0) == header_valid);
    p.fill_checksum();
    check(p.verify_checksum());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};

    const auto view = icmp::packet<const_bytes>::checked(input);
    if (view) {
        std::size_t sum = view->type() + view->code() + view->checksum() + view->identifier() + view->sequence() +
                          view->next_hop_mtu() + view->pointer() + view->gateway().to_u32() + view->original_length() +
                          view->data().size();
        if (const auto quote = view->quoted()) sum += touch_quote(*quote);
        sink = sum;
    }
    rewrite(data, size);

    const auto first = icmp::repr::parse(input);
    if (!first) return 0;
    check(view.has_value());

    std::vector<std::byte> out(first->buffer_len());
    check(!first->emit(mutable_bytes{out}));
    const auto second = icmp::repr::parse(const_bytes{out});
    check(second.has_value());
    check(*second == *first);
    check(second->buffer_len() == out.size());
    return 0;
}
