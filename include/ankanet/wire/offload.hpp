/// @file
/// ankanet::wire::offload — offload metadata a frame may carry: the virtio-net header.
///
/// Theory of operation. A NIC that offloads checksums and segmentation exchanges frames with the
/// host together with a small header (struct virtio_net_hdr in linux/virtio_net.h, the virtio 1.x
/// spec §5.1.6): a frame may leave its TCP/UDP checksum unfinished (NEEDS_CSUM: the field at
/// csum_start + csum_offset holds the pseudo-header sum, and whoever sends it on sums from
/// csum_start to the end of the frame), or be a GSO "super-frame" of up to 64 KiB of TCP payload
/// that is to be cut into gso_size-byte segments before it reaches a wire. A TAP opened with
/// IFF_VNET_HDR speaks this header on both directions, so with it the kernel hands us, and takes
/// from us, 64 KiB frames at the cost of one system call.
///
/// `offload` is that header as a value. parse() and emit() convert it from and to the wire form:
/// 10 bytes (virtio_net_hdr) or 12 (virtio_net_hdr_v1, with num_buffers), little-endian as virtio
/// 1.x and Linux's TUNSETVNETLE mandate. Both refuse what the spec forbids (see validate()): unknown
/// flag bits or GSO types, GSO without NEEDS_CSUM or without a segment size, ECN without GSO, and
/// NEEDS_CSUM with DATA_VALID. hdr_len is a hint in the spec and is carried, never trusted.
///
/// Whoever cannot pass the metadata on (a backend without offloads, the NAT's host sockets) must
/// finish the work in software, which the two functions at the end do:
///  * complete_checksum(frame, meta) fills a NEEDS_CSUM checksum in place, as Linux's
///    skb_checksum_help does (a result of 0 is written 0xffff, which UDP requires and TCP accepts).
///  * segment(frame, meta, scratch, emit) cuts a TCPv4 super-frame into frames of at most gso_size
///    payload bytes, as Linux's tcp_gso_segment does: every segment gets the headers of the
///    original; IPv4 total length, an identification counting up from the original's and the header
///    checksum are rewritten; the TCP sequence number advances by the payload before it; FIN and PSH
///    stay only on the last segment and CWR only on the first; each TCP checksum is computed whole.
///    Each segment is built in `scratch` (one segment at a time, no allocation) and handed to
///    `emit` before the next overwrites it. A frame without GSO is copied and its checksum finished.
/// The frame's headers are parsed with the views of ethernet.hpp, ipv4.hpp and tcp.hpp (one VLAN tag
/// allowed; IPv4 options and TCP options copied as they are); bytes after the IPv4 total length
/// (Ethernet padding) are not payload.
/// Limits: only TCPv4 is segmented; UDP (UFO), UDP_L4 and TCPv6 super-frames are refused with
/// errc::unsupported (there is no IPv6 view in wire/ yet).
#pragma once

#include <ankanet/result.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/checksum.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>

#include <boost/endian/conversion.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <type_traits>
#include <utility>

namespace ankanet::wire {

/// The virtio-net header of one frame, parsed. See the top of this file.
struct offload {
    /// struct virtio_net_hdr.
    static constexpr std::size_t header_len = 10;
    /// struct virtio_net_hdr_v1 (and virtio_net_hdr_mrg_rxbuf): num_buffers follows.
    static constexpr std::size_t header_len_v1 = 12;
    /// The longest frame a super-frame can be: one VLAN tag and a 65,535-byte IPv4 datagram.
    static constexpr std::size_t max_frame_len = ethernet::header_len + ethernet::vlan_tag_len + ipv4::max_packet_len;

    /// VIRTIO_NET_HDR_GSO_*, without the ECN bit.
    enum class gso : std::uint8_t {
        none = 0,
        tcpv4 = 1,
        udp = 3,    ///< UFO: one IPv4 UDP datagram to fragment
        tcpv6 = 4,
        udp_l4 = 5, ///< USO: UDP segmentation (Linux 5.18+)
    };

    /// Wire values (VIRTIO_NET_HDR_F_*, VIRTIO_NET_HDR_GSO_ECN).
    static constexpr std::uint8_t flag_needs_csum = 0x01;
    static constexpr std::uint8_t flag_data_valid = 0x02; ///< flag data valid
    static constexpr std::uint8_t gso_ecn_bit = 0x80; ///< GSO ECN bit

    bool needs_csum = false;  ///< the checksum at csum_start + csum_offset is to be finished
    bool data_valid = false;  ///< (to a driver) the checksum was already verified
    gso gso_type = gso::none; ///< GSO type
    bool ecn = false;         ///< a TCP super-frame whose first segment carries CWR (RFC 3168)
    std::uint16_t hdr_len = 0;     ///< length of the headers; a hint only
    std::uint16_t gso_size = 0;    ///< payload bytes per segment (the MSS)
    std::uint16_t csum_start = 0;  ///< from the start of the frame
    std::uint16_t csum_offset = 0; ///< of the checksum field, from csum_start
    std::uint16_t num_buffers = 0; ///< v1 header only; not interpreted

    /// Whether it is gso.
    bool is_gso() const noexcept { return gso_type != gso::none; }
    /// Nothing left to do: a frame with this metadata may be sent as it is by anyone.
    bool is_plain() const noexcept { return !needs_csum && !is_gso(); }

    /// The metadata of a TCPv4 super-frame, as a guest's virtio driver writes it: headers of
    /// `headers` bytes (Ethernet, IPv4, TCP), the TCP header at `l4_offset`, segments of `mss`.
    static offload tcpv4_gso(std::size_t l4_offset, std::size_t headers, std::uint16_t mss) noexcept {
        offload o;
        o.needs_csum = true;
        o.gso_type = gso::tcpv4;
        o.hdr_len = static_cast<std::uint16_t>(headers);
        o.gso_size = mss;
        o.csum_start = static_cast<std::uint16_t>(l4_offset);
        o.csum_offset = tcp::field::checksum;
        return o;
    }

    /// What the spec forbids in a header, whatever the frame (see the top of this file).
    std::error_code validate() const noexcept {
        switch (gso_type) {
        case gso::none: case gso::tcpv4: case gso::udp: case gso::tcpv6: case gso::udp_l4: break;
        default: return errc::bad_field;
        }
        if (needs_csum && data_valid) return errc::bad_field;
        if (ecn && !is_gso()) return errc::bad_field;
        if (is_gso() && (gso_size == 0 || !needs_csum)) return errc::bad_field;
        return {};
    }

    /// Parses a 10- or 12-byte header (`bytes` is exactly the header).
    /// @return the header; errc::truncated (shorter than 10), errc::bad_length (neither 10 nor 12),
    /// errc::bad_field (unknown flag bits or GSO type, or a combination validate() refuses).
    static result<offload> parse(const_bytes bytes) noexcept {
        if (bytes.size() < header_len) return errc::truncated;
        if (bytes.size() != header_len && bytes.size() != header_len_v1) return errc::bad_length;
        const std::uint8_t flags = load_u8(bytes, 0);
        const std::uint8_t type = load_u8(bytes, 1);
        if ((flags & ~(flag_needs_csum | flag_data_valid)) != 0) return errc::bad_field; // RSC_INFO too: never negotiated
        offload o;
        o.needs_csum = (flags & flag_needs_csum) != 0;
        o.data_valid = (flags & flag_data_valid) != 0;
        o.gso_type = static_cast<gso>(type & ~gso_ecn_bit); // any value: validate() refuses unknown ones
        o.ecn = (type & gso_ecn_bit) != 0;
        o.hdr_len = load_le16(bytes, 2);
        o.gso_size = load_le16(bytes, 4);
        o.csum_start = load_le16(bytes, 6);
        o.csum_offset = load_le16(bytes, 8);
        if (bytes.size() == header_len_v1) o.num_buffers = load_le16(bytes, 10);
        if (auto ec = o.validate()) return ec;
        return o;
    }

    /// Writes the header into `out`, which is exactly 10 or 12 bytes (errc::bad_length otherwise);
    /// refuses a header validate() refuses.
    std::error_code emit(mutable_bytes out) const noexcept {
        if (out.size() != header_len && out.size() != header_len_v1) return errc::bad_length;
        if (auto ec = validate()) return ec;
        store_u8(out, 0, static_cast<std::uint8_t>((needs_csum ? flag_needs_csum : 0) | (data_valid ? flag_data_valid : 0)));
        store_u8(out, 1, static_cast<std::uint8_t>(static_cast<std::uint8_t>(gso_type) | (ecn ? gso_ecn_bit : 0)));
        store_le16(out, 2, hdr_len);
        store_le16(out, 4, gso_size);
        store_le16(out, 6, csum_start);
        store_le16(out, 8, csum_offset);
        if (out.size() == header_len_v1) store_le16(out, 10, num_buffers);
        return {};
    }

    /// Memberwise equality.
    bool operator==(const offload&) const noexcept = default;

private:
    static std::uint16_t load_le16(const_bytes bytes, std::size_t at) noexcept {
        return boost::endian::load_little_u16(reinterpret_cast<const unsigned char*>(bytes.data() + at));
    }
    static void store_le16(mutable_bytes bytes, std::size_t at, std::uint16_t value) noexcept {
        boost::endian::store_little_u16(reinterpret_cast<unsigned char*>(bytes.data() + at), value);
    }
};

/// Finishes a NEEDS_CSUM checksum of `frame` in place (nothing to do without NEEDS_CSUM).
/// @return errc::truncated when the checksum field or its start lie past the frame.
inline std::error_code complete_checksum(mutable_bytes frame, const offload& meta) noexcept {
    if (!meta.needs_csum) return {};
    const std::size_t field = std::size_t{meta.csum_start} + meta.csum_offset;
    if (field + 2 > frame.size()) return errc::truncated;
    // The field holds the pseudo-header sum, which the sum over [csum_start, end) takes in.
    const std::uint16_t value = checksum::accumulator{}.add(frame.subspan(meta.csum_start)).finish();
    store_be16(frame, field, value == 0 ? 0xffff : value);
    return {};
}

/// Whether `frame` may travel on as it is, metadata and all, to a consumer that knows TCP: an
/// unfragmented IPv4 TCP segment (untagged Ethernet) whose one unfinished piece of work is its TCP
/// checksum (NEEDS_CSUM pointing at exactly that field) and, for a TCPv4 super-frame, cutting it
/// into segments whose IPv4 datagrams (headers plus gso_size) each fit `mtu`. Anything else — UDP,
/// a checksum elsewhere, a VLAN tag, segments the MTU could not carry, metadata validate() refuses
/// — is false: it is for segment() to make plain, or to refuse.
inline bool is_tcpv4_offload(const_bytes frame, const offload& meta, std::size_t mtu) noexcept {
    if (meta.validate() || !meta.needs_csum) return false;
    if (meta.is_gso() && meta.gso_type != offload::gso::tcpv4) return false;
    const ethernet::packet<const_bytes> eth{frame};
    if (eth.check_len() || eth.ethertype() != ethernet::ethertype::ipv4 || eth.header_length() != ethernet::header_len) {
        return false;
    }
    const ipv4::packet<const_bytes> ip{eth.payload()};
    if (ip.check_len() || ip.protocol() != ipv4::protocol::tcp || ip.is_fragment()) return false;
    const tcp::packet<const_bytes> segment{ip.payload()};
    if (segment.check_len()) return false;
    const std::size_t l4 = ethernet::header_len + ip.header_length();
    if (meta.csum_start != l4 || meta.csum_offset != tcp::field::checksum) return false;
    if (!meta.is_gso()) return true;
    return ip.header_length() + segment.header_length() + meta.gso_size <= mtu;
}

namespace detail {

/// Hands one segment to `emit`, which may return void or a std::error_code that stops segment().
template <class Emit>
std::error_code deliver_segment(Emit& emit, mutable_bytes segment) {
    if constexpr (std::is_convertible_v<std::invoke_result_t<Emit&, mutable_bytes>, std::error_code>) {
        return emit(segment);
    } else {
        emit(segment);
        return {};
    }
}

} // namespace detail

/// Cuts `frame` into the frames a NIC would have sent for it (see the top of this file), each
/// built in `scratch` and passed to `emit(mutable_bytes)` before the next is built.
///
/// @param scratch room for the largest segment: the headers plus gso_size bytes (for a frame
/// without GSO, the frame itself).
/// @param emit called once per segment; may return std::error_code, and a non-empty one stops
/// segmentation and is returned.
/// @return empty, or: the error of validate(); errc::unsupported (a GSO type other than TCPv4);
/// errc::bad_field (TCPv4 GSO on a frame that is not one unfragmented IPv4 TCP datagram); the
/// views' length errors (truncated, bad_length, bad_header_length, bad_version);
/// errc::buffer_too_small (`scratch` cannot hold a segment); complete_checksum's error; emit's.
/// Nothing is emitted when the frame is refused.
template <class Emit>
std::error_code segment(const_bytes frame, const offload& meta, mutable_bytes scratch, Emit&& emit) {
    if (auto ec = meta.validate()) return ec;
    if (!meta.is_gso()) {
        if (scratch.size() < frame.size()) return errc::buffer_too_small;
        const mutable_bytes out = scratch.first(frame.size());
        store_bytes(out, 0, frame);
        if (auto ec = complete_checksum(out, meta)) return ec;
        return detail::deliver_segment(emit, out);
    }
    if (meta.gso_type != offload::gso::tcpv4) return errc::unsupported;

    const ethernet::packet<const_bytes> eth{frame};
    if (auto ec = eth.check_len()) return ec;
    if (eth.ethertype() != ethernet::ethertype::ipv4) return errc::bad_field;
    const ipv4::packet<const_bytes> ip{eth.payload()};
    if (auto ec = ip.check_len()) return ec;
    if (ip.protocol() != ipv4::protocol::tcp || ip.is_fragment()) return errc::bad_field;
    const tcp::packet<const_bytes> original{ip.payload()};
    if (auto ec = original.check_len()) return ec;

    const std::size_t l2 = eth.header_length();
    const std::size_t l3 = ip.header_length();
    const std::size_t headers = l2 + l3 + original.header_length();
    const const_bytes data = original.payload();
    const std::size_t mss = meta.gso_size;
    const std::size_t count = data.empty() ? 1 : (data.size() + mss - 1) / mss;
    if (scratch.size() < headers + std::min(mss, data.size())) return errc::buffer_too_small;

    const tcp::flag_set flags = original.flags();
    for (std::size_t i = 0; i < count; ++i) {
        const const_bytes chunk = data.subspan(i * mss, std::min(mss, data.size() - i * mss));
        const mutable_bytes out = scratch.first(headers + chunk.size());
        store_bytes(out, 0, frame.first(headers)); // Ethernet, IPv4 and TCP headers are contiguous
        store_bytes(out, headers, chunk);

        ipv4::packet<mutable_bytes> datagram{out.subspan(l2)};
        datagram.set_total_length(static_cast<std::uint16_t>(out.size() - l2)); // <= the original's
        datagram.set_identification(static_cast<std::uint16_t>(ip.identification() + i));
        datagram.fill_checksum();

        tcp::packet<mutable_bytes> piece{out.subspan(l2 + l3)};
        piece.set_seq_number(static_cast<std::uint32_t>(original.seq_number() + i * mss));
        tcp::flag_set piece_flags = flags;
        if (i + 1 < count) piece_flags.set(tcp::flag::fin, false).set(tcp::flag::psh, false);
        if (i > 0) piece_flags.set(tcp::flag::cwr, false);
        piece.set_flags(piece_flags);
        piece.fill_checksum(ip.source(), ip.destination());

        if (auto ec = detail::deliver_segment(emit, out)) return ec;
    }
    return {};
}

} // namespace ankanet::wire
