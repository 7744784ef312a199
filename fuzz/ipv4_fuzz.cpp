// Fuzzes the IPv4 view and repr: whatever the bytes, parse -> emit -> parse gives the same repr,
// and the NAT rewrites keep a valid header checksum valid (equal to a full recomputation).
#include <ankanet/wire/ipv4.hpp>

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

/// Reads every field of a checked view, so the sanitizers see each access.
template <class View>
std::size_t touch(const View& p) {
    std::size_t sum = p.version() + p.header_length() + p.dscp() + p.ecn() + p.total_length() + p.identification() +
                      p.fragment_offset() + p.ttl() + p.protocol() + p.checksum() + p.source().to_u32() +
                      p.destination().to_u32() + (p.dont_fragment() ? 1u : 0u) + (p.is_fragment() ? 1u : 0u);
    for (std::byte b : p.options()) sum += static_cast<std::uint8_t>(b);
    for (std::byte b : p.payload()) sum += static_cast<std::uint8_t>(b);
    check(p.header_length() + p.payload().size() == p.total_length());
    check(p.total_length() <= p.buffer().size());
    return sum;
}

/// The NAT helpers, applied to a copy: incremental and full checksums must agree.
void rewrite(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
    ipv4::packet<mutable_bytes> p{mutable_bytes{bytes}};
    if (p.check_len() || !p.verify_checksum()) return;
    // New values derived from the input, so the fuzzer steers them too.
    const ipv4_address new_source{p.destination().to_u32() ^ 0x5a5a5a5au};
    const ipv4_address new_destination{p.source().to_u32() + 0x01020304u};
    p.rewrite_source(new_source);
    check(p.verify_checksum());
    p.rewrite_destination(new_destination);
    check(p.verify_checksum());
    const std::uint8_t ttl = p.ttl();
    check(p.decrement_ttl() == (ttl == 0 ? 0 : ttl - 1));
    check(p.verify_checksum());
    const std::uint16_t incremental = p.checksum();
    p.fill_checksum();
    check(p.checksum() == incremental);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};

    const auto view = ipv4::packet<const_bytes>::checked(input);
    if (view) {
        sink = touch(*view);
    }
    rewrite(data, size);

    const auto first = ipv4::repr::parse(input);
    if (!first) return 0;
    check(view.has_value());

    // Emit the header and put the original payload behind it.
    std::vector<std::byte> out(first->buffer_len() + first->payload_len);
    check(!first->emit(mutable_bytes{out}));
    const auto payload = view->payload();
    std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(first->buffer_len()));

    const auto second = ipv4::repr::parse(const_bytes{out});
    check(second.has_value());
    check(*second == *first);
    // Without options the emitted header is the input header, byte for byte, except for the
    // reserved flag (not carried) and a checksum of 0xffff where 0x0000 is computed (both verify).
    if (view->header_length() == ipv4::header_len && (load_u8(input, ipv4::field::flags_fragment) & 0x80) == 0) {
        check(std::equal(out.begin(), out.begin() + 10, input.begin()));
        check(std::equal(out.begin() + 12, out.begin() + 20, input.begin() + 12));
        check(view->checksum() == 0xffff || view->checksum() == load_be16(const_bytes{out}, ipv4::field::checksum));
    }
    return 0;
}
