#include <ankanet/wire/offload.hpp>

#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/tcp.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <system_error>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

constexpr mac_address host_mac{{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}};
constexpr mac_address guest_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
constexpr ipv4_address guest_ip{10, 0, 2, 15};
constexpr ipv4_address peer_ip{93, 184, 216, 34};

// What a Linux guest's virtio driver sends for a TSO frame: NEEDS_CSUM from the TCP header at 34,
// checksum field 16 bytes in, TCPv4 GSO, 54 bytes of headers, MSS 1460.
constexpr auto tso_header = make_bytes(0x01, 0x01, 0x36, 0x00, 0xb4, 0x05, 0x22, 0x00, 0x10, 0x00);

struct frame_spec {
    std::size_t payload = 10000;
    std::uint32_t seq = 1000;
    tcp::flag_set flags = tcp::flag_set{tcp::flag::ack} | tcp::flag::psh;
    bool timestamps = true;
    bool vlan = false;
    std::uint16_t ip_id = 0x1234;
};

struct built_frame {
    std::vector<std::byte> bytes;
    std::size_t l4_offset = 0;
    std::size_t headers = 0;
};

/// A TCPv4 frame from the guest with a patterned payload and a finished checksum.
built_frame make_frame(const frame_spec& spec) {
    ethernet::repr eth{guest_mac, host_mac, ethernet::ethertype::ipv4, std::nullopt};
    if (spec.vlan) eth.vlan_tci = 42;
    tcp::repr seg;
    seg.source_port = 40000;
    seg.destination_port = 443;
    seg.seq_number = spec.seq;
    seg.ack_number = 77;
    seg.flags = spec.flags;
    seg.window = 502;
    if (spec.timestamps) seg.timestamps = tcp::timestamp_values{123456, 654321};
    seg.payload_len = spec.payload;
    ipv4::repr ip;
    ip.source = guest_ip;
    ip.destination = peer_ip;
    ip.protocol = ipv4::protocol::tcp;
    ip.identification = spec.ip_id;
    ip.dont_fragment = true;
    ip.payload_len = seg.buffer_len() + spec.payload;

    built_frame out;
    out.l4_offset = eth.buffer_len() + ip.buffer_len();
    out.headers = out.l4_offset + seg.buffer_len();
    out.bytes.resize(out.headers + spec.payload);
    for (std::size_t i = 0; i < spec.payload; ++i) out.bytes[out.headers + i] = std::byte(static_cast<unsigned char>(i * 7 + i / 251));
    REQUIRE_FALSE(eth.emit(out.bytes));
    REQUIRE_FALSE(ip.emit(mutable_bytes{out.bytes}.subspan(eth.buffer_len())));
    REQUIRE_FALSE(seg.emit(mutable_bytes{out.bytes}.subspan(out.l4_offset), guest_ip, peer_ip));
    return out;
}

/// Replaces the finished TCP checksum with the pseudo-header sum a driver leaves for the NIC.
void make_partial(built_frame& frame) {
    const auto length = static_cast<std::uint16_t>(frame.bytes.size() - frame.l4_offset);
    const std::uint16_t partial = checksum::ipv4_pseudo_header(guest_ip, peer_ip, tcp::protocol_number, length).sum();
    store_be16(frame.bytes, frame.l4_offset + tcp::field::checksum, partial);
}

struct segment_record {
    ipv4::repr ip;
    tcp::repr tcp;
    std::vector<std::byte> payload;
    std::size_t size = 0;
};

/// Segments `frame`, checking every piece with the views' own validation (checksums included).
std::vector<segment_record> cut(const built_frame& frame, const offload& meta, std::size_t l2 = ethernet::header_len) {
    std::vector<std::byte> scratch(65600);
    std::vector<segment_record> pieces;
    const auto ec = segment(frame.bytes, meta, scratch, [&](mutable_bytes out) {
        segment_record r;
        r.size = out.size();
        const ipv4::packet<const_bytes> datagram{const_bytes{out}.subspan(l2)};
        auto ip = ipv4::repr::parse(datagram);
        REQUIRE(ip);
        r.ip = *ip;
        const tcp::packet<const_bytes> piece{datagram.payload()};
        auto parsed = tcp::repr::parse(piece, ip->source, ip->destination);
        REQUIRE(parsed);
        r.tcp = *parsed;
        r.payload.assign(piece.payload().begin(), piece.payload().end());
        pieces.push_back(std::move(r));
    });
    INFO(ec.message());
    REQUIRE_FALSE(ec);
    return pieces;
}

} // namespace

TEST_CASE("offload: a virtio-net header parses and emits byte for byte, 10 and 12 bytes") {
    auto parsed = offload::parse(tso_header);
    REQUIRE(parsed);
    CHECK(parsed->needs_csum);
    CHECK_FALSE(parsed->data_valid);
    CHECK(parsed->gso_type == offload::gso::tcpv4);
    CHECK_FALSE(parsed->ecn);
    CHECK(parsed->hdr_len == 54);
    CHECK(parsed->gso_size == 1460);
    CHECK(parsed->csum_start == 34);
    CHECK(parsed->csum_offset == 16);
    CHECK(*parsed == offload::tcpv4_gso(34, 54, 1460));

    std::array<std::byte, offload::header_len> out{};
    REQUIRE_FALSE(parsed->emit(out));
    CHECK(out == tso_header);

    // v1: num_buffers follows, little-endian.
    const auto v1 = make_bytes(0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02);
    auto parsed_v1 = offload::parse(v1);
    REQUIRE(parsed_v1);
    CHECK(parsed_v1->data_valid);
    CHECK(parsed_v1->num_buffers == 0x0201);
    CHECK(parsed_v1->is_plain());
    std::array<std::byte, offload::header_len_v1> out_v1{};
    REQUIRE_FALSE(parsed_v1->emit(out_v1));
    CHECK(out_v1 == v1);

    // ECN rides in the GSO type byte.
    auto ecn_header = tso_header;
    ecn_header[1] = std::byte{0x81};
    auto ecn = offload::parse(ecn_header);
    REQUIRE(ecn);
    CHECK(ecn->ecn);
    CHECK(ecn->gso_type == offload::gso::tcpv4);
    REQUIRE_FALSE(ecn->emit(out));
    CHECK(out == ecn_header);

    // All zero: a plain frame.
    auto zero = offload::parse(std::array<std::byte, 10>{});
    REQUIRE(zero);
    CHECK(*zero == offload{});
}

TEST_CASE("offload: parse refuses headers the virtio spec forbids") {
    for (std::size_t n = 0; n < offload::header_len; ++n) {
        CHECK(offload::parse(const_bytes{tso_header}.first(n)).error() == errc::truncated);
    }
    std::array<std::byte, 16> longer{};
    CHECK(offload::parse(const_bytes{longer}.first(11)).error() == errc::bad_length);
    CHECK(offload::parse(const_bytes{longer}.first(13)).error() == errc::bad_length);

    const auto with = [](std::size_t at, unsigned value) {
        auto h = tso_header;
        h[at] = std::byte(static_cast<unsigned char>(value));
        return offload::parse(h).error();
    };
    CHECK(with(0, 0x04) == errc::bad_field); // RSC_INFO: never negotiated
    CHECK(with(0, 0x80) == errc::bad_field); // an unknown flag
    CHECK(with(0, 0x03) == errc::bad_field); // NEEDS_CSUM and DATA_VALID
    CHECK(with(0, 0x00) == errc::bad_field); // GSO without NEEDS_CSUM
    CHECK(with(1, 0x02) == errc::bad_field); // no GSO type 2
    CHECK(with(1, 0x7f) == errc::bad_field);
    CHECK(with(1, 0x06) == errc::bad_field);
    auto no_size = tso_header;
    no_size[4] = no_size[5] = std::byte{0};
    CHECK(offload::parse(no_size).error() == errc::bad_field); // GSO with gso_size 0
    auto ecn_alone = std::array<std::byte, 10>{};
    ecn_alone[1] = std::byte{0x80};
    CHECK(offload::parse(ecn_alone).error() == errc::bad_field); // ECN without GSO

    // Every defined GSO type parses.
    for (unsigned type : {1u, 3u, 4u, 5u}) CHECK_FALSE(with(1, type));

    // emit refuses the same, and wrong sizes.
    offload bad;
    bad.gso_type = offload::gso::tcpv4;
    bad.gso_size = 1460; // no NEEDS_CSUM
    std::array<std::byte, 12> out{};
    CHECK(bad.emit(out) == errc::bad_field);
    CHECK(offload{}.emit(mutable_bytes{out}.first(11)) == errc::bad_length);
}

TEST_CASE("offload: random headers either fail to parse or re-emit to the same bytes") {
    std::mt19937 random{20261207};
    std::uniform_int_distribution<int> byte{0, 255};
    int parsed = 0;
    for (int round = 0; round < 20000; ++round) {
        std::array<std::byte, offload::header_len_v1> bytes{};
        for (auto& b : bytes) b = std::byte(static_cast<unsigned char>(byte(random)));
        // Bias towards valid flag and type bytes so both paths are exercised.
        if (round % 2 == 0) {
            bytes[0] = std::byte(static_cast<unsigned char>(byte(random) & 0x03));
            bytes[1] = std::byte(static_cast<unsigned char>(byte(random) & 0x87));
        }
        const std::size_t size = round % 3 == 0 ? offload::header_len : offload::header_len_v1;
        const const_bytes header = const_bytes{bytes}.first(size);
        auto meta = offload::parse(header);
        if (!meta) continue;
        ++parsed;
        std::array<std::byte, offload::header_len_v1> out{};
        REQUIRE_FALSE(meta->emit(mutable_bytes{out}.first(size)));
        REQUIRE(std::equal(header.begin(), header.end(), out.begin()));
    }
    CHECK(parsed > 1000);
}

TEST_CASE("offload: complete_checksum finishes a partial TCP checksum") {
    for (std::size_t payload : {std::size_t{0}, std::size_t{1}, std::size_t{1460}, std::size_t{60001}}) {
        auto frame = make_frame({.payload = payload});
        const std::uint16_t finished = load_be16(frame.bytes, frame.l4_offset + tcp::field::checksum);
        make_partial(frame);
        REQUIRE(load_be16(frame.bytes, frame.l4_offset + tcp::field::checksum) != finished);
        auto meta = offload::tcpv4_gso(frame.l4_offset, frame.headers, 1460);
        meta.gso_type = offload::gso::none;
        meta.gso_size = 0;
        REQUIRE_FALSE(complete_checksum(frame.bytes, meta));
        CHECK(load_be16(frame.bytes, frame.l4_offset + tcp::field::checksum) == finished);
        const ipv4::packet<const_bytes> ip{const_bytes{frame.bytes}.subspan(ethernet::header_len)};
        CHECK(tcp::packet<const_bytes>{ip.payload()}.verify_checksum(guest_ip, peer_ip));
    }
}

TEST_CASE("offload: complete_checksum leaves frames alone without NEEDS_CSUM and refuses fields past the frame") {
    auto frame = make_frame({.payload = 100});
    const auto before = frame.bytes;
    REQUIRE_FALSE(complete_checksum(frame.bytes, offload{}));
    CHECK(frame.bytes == before);

    offload meta;
    meta.needs_csum = true;
    meta.csum_start = static_cast<std::uint16_t>(frame.bytes.size() - 1);
    meta.csum_offset = 0;
    CHECK(complete_checksum(frame.bytes, meta) == errc::truncated);
    meta.csum_start = 0xffff;
    meta.csum_offset = 0xffff;
    CHECK(complete_checksum(frame.bytes, meta) == errc::truncated);
    CHECK(frame.bytes == before);
}

TEST_CASE("offload: complete_checksum writes a zero result as 0xffff") {
    // Bytes summing to 0xffff make the checksum 0, which UDP reserves for "none".
    auto bytes = make_bytes(0x00, 0x00, 0xff, 0xff);
    offload meta;
    meta.needs_csum = true;
    meta.csum_start = 0;
    meta.csum_offset = 0;
    REQUIRE_FALSE(complete_checksum(bytes, meta));
    CHECK(load_be16(bytes, 0) == 0xffff);
}

TEST_CASE("offload: segment cuts a TCPv4 super-frame into MSS-sized frames") {
    const bool vlan = GENERATE(false, true);
    const std::uint32_t first_seq = GENERATE(std::uint32_t{1000}, std::uint32_t{0xffffe000}); // the second wraps
    const std::uint16_t mss = GENERATE(std::uint16_t{1448}, std::uint16_t{536});
    frame_spec spec;
    spec.payload = 65000;
    spec.seq = first_seq;
    spec.vlan = vlan;
    spec.ip_id = 0xfffe; // wraps too
    spec.flags = tcp::flag_set{tcp::flag::ack} | tcp::flag::psh | tcp::flag::fin | tcp::flag::cwr | tcp::flag::ece;
    auto frame = make_frame(spec);
    make_partial(frame);
    auto meta = offload::tcpv4_gso(frame.l4_offset, frame.headers, mss);
    meta.ecn = true;
    const std::size_t l2 = vlan ? ethernet::header_len + ethernet::vlan_tag_len : ethernet::header_len;

    const auto pieces = cut(frame, meta, l2);
    const std::size_t expected = (spec.payload + mss - 1) / mss;
    REQUIRE(pieces.size() == expected);

    std::vector<std::byte> joined;
    std::uint32_t next_seq = first_seq;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        INFO("segment " << i);
        const auto& p = pieces[i];
        const bool first = i == 0;
        const bool last = i + 1 == pieces.size();
        CHECK(p.payload.size() == (last ? spec.payload - (expected - 1) * mss : mss));
        CHECK(p.size == frame.headers + p.payload.size());
        CHECK(p.ip.identification == static_cast<std::uint16_t>(0xfffe + i));
        CHECK(p.ip.dont_fragment);
        CHECK(p.ip.source == guest_ip);
        CHECK(p.ip.destination == peer_ip);
        CHECK(p.tcp.seq_number == next_seq);
        CHECK(p.tcp.ack_number == 77);
        CHECK(p.tcp.window == 502);
        CHECK(p.tcp.timestamps == std::optional{tcp::timestamp_values{123456, 654321}});
        CHECK(p.tcp.flags.ack());
        CHECK(p.tcp.flags.ece());
        CHECK(p.tcp.flags.fin() == last);
        CHECK(p.tcp.flags.psh() == last);
        CHECK(p.tcp.flags.cwr() == first);
        next_seq += static_cast<std::uint32_t>(p.payload.size());
        joined.insert(joined.end(), p.payload.begin(), p.payload.end());
    }
    CHECK(std::equal(joined.begin(), joined.end(), frame.bytes.begin() + static_cast<std::ptrdiff_t>(frame.headers),
                     frame.bytes.end()));
    CHECK(joined.size() == spec.payload);
}

TEST_CASE("offload: segment handles exact multiples, a payload within one MSS and no payload") {
    for (std::size_t payload : {std::size_t{0}, std::size_t{1}, std::size_t{1448}, std::size_t{2896}, std::size_t{2897}}) {
        INFO("payload " << payload);
        auto frame = make_frame({.payload = payload, .flags = tcp::flag_set{tcp::flag::ack} | tcp::flag::fin});
        make_partial(frame);
        const auto pieces = cut(frame, offload::tcpv4_gso(frame.l4_offset, frame.headers, 1448));
        CHECK(pieces.size() == (payload == 0 ? 1 : (payload + 1447) / 1448));
        CHECK(pieces.back().tcp.flags.fin());
        std::size_t total = 0;
        for (const auto& p : pieces) total += p.payload.size();
        CHECK(total == payload);
    }
}

TEST_CASE("offload: segment ignores Ethernet padding after the IPv4 datagram") {
    auto frame = make_frame({.payload = 3000});
    make_partial(frame);
    frame.bytes.resize(frame.bytes.size() + 6, std::byte{0xee});
    const auto pieces = cut(frame, offload::tcpv4_gso(frame.l4_offset, frame.headers, 1000));
    REQUIRE(pieces.size() == 3);
    CHECK(pieces.back().payload.size() == 1000);
}

TEST_CASE("offload: segment of a frame without GSO copies it and finishes its checksum") {
    auto frame = make_frame({.payload = 700});
    const auto finished = frame.bytes;
    make_partial(frame);
    auto meta = offload::tcpv4_gso(frame.l4_offset, frame.headers, 1460);
    meta.gso_type = offload::gso::none;
    meta.gso_size = 0;
    std::vector<std::byte> scratch(2000);
    int calls = 0;
    REQUIRE_FALSE(segment(frame.bytes, meta, scratch, [&](mutable_bytes out) {
        ++calls;
        CHECK(std::equal(out.begin(), out.end(), finished.begin(), finished.end()));
    }));
    CHECK(calls == 1);

    // A plain frame passes as it is.
    calls = 0;
    REQUIRE_FALSE(segment(finished, offload{}, scratch, [&](mutable_bytes out) {
        ++calls;
        CHECK(std::equal(out.begin(), out.end(), finished.begin(), finished.end()));
    }));
    CHECK(calls == 1);
}

TEST_CASE("offload: segment refuses what it cannot cut, emitting nothing") {
    auto frame = make_frame({.payload = 5000});
    make_partial(frame);
    const auto meta = offload::tcpv4_gso(frame.l4_offset, frame.headers, 1448);
    std::vector<std::byte> scratch(65600);
    int calls = 0;
    const auto count = [&calls](mutable_bytes) { ++calls; };

    auto other = meta;
    other.gso_type = offload::gso::tcpv6;
    CHECK(segment(frame.bytes, other, scratch, count) == errc::unsupported);
    other.gso_type = offload::gso::udp;
    CHECK(segment(frame.bytes, other, scratch, count) == errc::unsupported);
    other = meta;
    other.needs_csum = false;
    CHECK(segment(frame.bytes, other, scratch, count) == errc::bad_field);

    // Not TCP in IPv4.
    auto udp_frame = frame.bytes;
    ipv4::packet<mutable_bytes> ip{mutable_bytes{udp_frame}.subspan(ethernet::header_len)};
    ip.set_protocol(ipv4::protocol::udp);
    CHECK(segment(udp_frame, meta, scratch, count) == errc::bad_field);
    auto arp_frame = frame.bytes;
    store_be16(arp_frame, 12, ethernet::ethertype::arp);
    CHECK(segment(arp_frame, meta, scratch, count) == errc::bad_field);
    auto fragment = frame.bytes;
    ipv4::packet<mutable_bytes>{mutable_bytes{fragment}.subspan(ethernet::header_len)}.set_more_fragments(true);
    CHECK(segment(fragment, meta, scratch, count) == errc::bad_field);

    // Lengths that lie, and truncation at every point of the headers.
    auto lying = frame.bytes;
    ipv4::packet<mutable_bytes>{mutable_bytes{lying}.subspan(ethernet::header_len)}.set_total_length(0xffff);
    CHECK(segment(lying, meta, scratch, count) == errc::bad_length);
    for (std::size_t n = 0; n < frame.headers; ++n) {
        CHECK(segment(const_bytes{frame.bytes}.first(n), meta, scratch, count));
    }
    auto bad_offset = frame.bytes;
    store_u8(bad_offset, frame.l4_offset + tcp::field::offset_and_flags, 0xf0); // 60 bytes of header
    ipv4::packet<mutable_bytes>{mutable_bytes{bad_offset}.subspan(ethernet::header_len)}.set_total_length(50);
    CHECK(segment(bad_offset, meta, scratch, count) == errc::truncated);

    // A scratch that cannot hold one segment.
    CHECK(segment(frame.bytes, meta, mutable_bytes{scratch}.first(frame.headers + 1447), count) == errc::buffer_too_small);
    CHECK(calls == 0);
}

TEST_CASE("offload: an error from emit stops segmentation and is returned") {
    auto frame = make_frame({.payload = 5000});
    make_partial(frame);
    std::vector<std::byte> scratch(2000);
    int calls = 0;
    const auto ec = segment(frame.bytes, offload::tcpv4_gso(frame.l4_offset, frame.headers, 1000), scratch,
                            [&](mutable_bytes) -> std::error_code {
                                return ++calls == 2 ? make_error_code(std::errc::no_buffer_space) : std::error_code{};
                            });
    CHECK(ec == std::errc::no_buffer_space);
    CHECK(calls == 2);
}

TEST_CASE("offload: is_tcpv4_offload takes a TCPv4 frame whose one pending work is its checksum and segments that fit") {
    frame_spec spec;
    spec.payload = 65000;
    auto frame = make_frame(spec);
    make_partial(frame);
    const auto meta = offload::tcpv4_gso(frame.l4_offset, frame.headers, 1448);
    CHECK(is_tcpv4_offload(frame.bytes, meta, 1500));
    // A segment is its IPv4 datagram: headers (20 + 32 with timestamps) plus gso_size, no more than the MTU.
    CHECK(is_tcpv4_offload(frame.bytes, meta, 1448 + 52));
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, meta, 1448 + 51));

    // Checksum only (no GSO): any size the frame has.
    offload csum = meta;
    csum.gso_type = offload::gso::none;
    csum.gso_size = 0;
    csum.hdr_len = 0;
    CHECK(is_tcpv4_offload(frame.bytes, csum, 1500));

    // Nothing pending, or the checksum somewhere else, or a GSO type other than TCPv4.
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, offload{}, 1500));
    offload elsewhere = meta;
    elsewhere.csum_offset = 6;
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, elsewhere, 1500));
    elsewhere = meta;
    elsewhere.csum_start = static_cast<std::uint16_t>(frame.l4_offset - 20);
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, elsewhere, 1500));
    offload udp = meta;
    udp.gso_type = offload::gso::udp;
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, udp, 1500));
    offload invalid = meta;
    invalid.data_valid = true;
    CHECK_FALSE(is_tcpv4_offload(frame.bytes, invalid, 1500));

    // Not TCP, a fragment, a VLAN tag, a truncated frame.
    auto not_tcp = frame;
    not_tcp.bytes[ethernet::header_len + ipv4::field::protocol] = std::byte{17};
    CHECK_FALSE(is_tcpv4_offload(not_tcp.bytes, meta, 1500));
    auto fragment = frame;
    fragment.bytes[ethernet::header_len + ipv4::field::flags_fragment] = std::byte{0x20}; // more fragments
    CHECK_FALSE(is_tcpv4_offload(fragment.bytes, meta, 1500));
    frame_spec tagged_spec = spec;
    tagged_spec.vlan = true;
    auto tagged = make_frame(tagged_spec);
    make_partial(tagged);
    CHECK_FALSE(is_tcpv4_offload(tagged.bytes, offload::tcpv4_gso(tagged.l4_offset, tagged.headers, 1448), 1500));
    CHECK_FALSE(is_tcpv4_offload(const_bytes{frame.bytes}.first(frame.l4_offset + 10), meta, 1500));
}

TEST_CASE("offload: a TCP header emitted with emit_partial is finished by complete_checksum into emit's") {
    frame_spec spec;
    spec.payload = 30000;
    auto whole = make_frame(spec); // emit(): the checksum finished in software
    auto partial = whole;
    tcp::repr seg = *tcp::repr::parse(tcp::packet<const_bytes>{const_bytes{whole.bytes}.subspan(whole.l4_offset)}, guest_ip, peer_ip);
    REQUIRE_FALSE(seg.emit_partial(mutable_bytes{partial.bytes}.subspan(partial.l4_offset), guest_ip, peer_ip));
    CHECK(partial.bytes != whole.bytes); // the field holds the pseudo-header sum only
    auto expected_partial = whole;
    make_partial(expected_partial);
    CHECK(partial.bytes == expected_partial.bytes);
    offload meta = offload::tcpv4_gso(partial.l4_offset, partial.headers, 1448);
    meta.gso_type = offload::gso::none;
    meta.gso_size = 0;
    REQUIRE_FALSE(complete_checksum(partial.bytes, meta));
    CHECK(partial.bytes == whole.bytes);
}
