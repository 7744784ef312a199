// Fuzz target for ankanet::wire::offload (the virtio-net header) and its software fallback.
//
// Input: a 10-byte virtio-net header, then an Ethernet frame.
// Checks, aborting on any failure:
//  * parse never reads out of bounds and, when it accepts, emit writes the same 10 bytes back;
//  * complete_checksum refuses exactly a checksum field past the frame, and touches only that field;
//  * segment (with the parsed header, and with a TCPv4 header made up from the input's gso_size)
//    never writes outside its scratch; when it succeeds on a TCPv4 super-frame, every segment's
//    IPv4 and TCP checksums verify, sequence numbers follow on, FIN/PSH are only on the last
//    segment and the payloads add up to the original's.
#include <ankanet/wire/offload.hpp>

#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>

#include "support/transport.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using ankanet::fuzz::check;

namespace {

void check_segments(const_bytes frame, const offload& meta) {
    static std::vector<std::byte> scratch(offload::max_frame_len);
    std::size_t pieces = 0;
    std::size_t payload = 0;
    std::uint32_t next_seq = 0;
    bool saw_fin = false;
    const auto ec = segment(frame, meta, scratch, [&](mutable_bytes out) {
        check(out.data() == scratch.data() && out.size() <= scratch.size());
        if (!meta.is_gso()) return;
        const ethernet::packet<const_bytes> eth{out};
        const ipv4::packet<const_bytes> ip{eth.payload()};
        check(!ip.check_len() && ip.verify_checksum());
        const tcp::packet<const_bytes> seg{ip.payload()};
        check(!seg.check_len() && seg.verify_checksum(ip.source(), ip.destination()));
        check(seg.payload().size() <= meta.gso_size);
        if (pieces > 0) check(seg.seq_number() == next_seq && !seg.flags().cwr());
        check(!saw_fin);
        saw_fin = seg.flags().fin();
        next_seq = static_cast<std::uint32_t>(seg.seq_number() + seg.payload().size());
        payload += seg.payload().size();
        ++pieces;
    });
    if (ec || !meta.is_gso()) return;
    const ethernet::packet<const_bytes> eth{frame};
    const ipv4::packet<const_bytes> ip{eth.payload()};
    const tcp::packet<const_bytes> original{ip.payload()};
    check(payload == original.payload().size());
    check(pieces >= 1);
    check(saw_fin == original.flags().fin());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < offload::header_len) return 0;
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    const const_bytes header = input.first(offload::header_len);
    const const_bytes frame = input.subspan(offload::header_len);

    const auto meta = offload::parse(header);
    if (meta) {
        std::array<std::byte, offload::header_len> again{};
        check(!meta->emit(again));
        check(std::ranges::equal(again, header));

        std::vector<std::byte> copy(frame.begin(), frame.end());
        const auto ec = complete_checksum(copy, *meta);
        const std::size_t field = std::size_t{meta->csum_start} + meta->csum_offset;
        check((meta->needs_csum && field + 2 > frame.size()) == static_cast<bool>(ec));
        for (std::size_t i = 0; i < copy.size(); ++i) {
            if (!meta->needs_csum || ec || i < field || i >= field + 2) check(copy[i] == frame[i]);
        }
        check_segments(frame, *meta);
    }

    // Whatever the header said, cut the frame as a TCPv4 super-frame with its gso_size.
    const std::uint16_t mss = std::max<std::uint16_t>(1, static_cast<std::uint16_t>(data[4] | (data[5] << 8)));
    check_segments(frame, offload::tcpv4_gso(ethernet::header_len + ipv4::header_len, 0, mss));
    return 0;
}
