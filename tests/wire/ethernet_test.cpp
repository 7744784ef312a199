#include <ankanet/wire/ethernet.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;

namespace {

// Captured with tcpdump on a veth between two network namespaces: `ping 192.168.64.1` from
// 52:54:00:12:34:56 (192.168.64.2). The ARP request that preceded it, broadcast, 42 bytes.
constexpr auto arp_request_frame = make_bytes(
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, // Ethernet
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    0xc0, 0xa8, 0x40, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x40, 0x01);

// The echo reply from 76:db:5c:60:4c:8b, an IPv4 frame of 58 bytes (same capture).
constexpr auto echo_reply_frame = make_bytes(
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x76, 0xdb, 0x5c, 0x60, 0x4c, 0x8b, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x2c, 0xa0, 0xc6, 0x00, 0x00, 0x40, 0x01, 0xd8, 0xb6, 0xc0, 0xa8, 0x40, 0x01, 0xc0, 0xa8,
    0x40, 0x02, 0x00, 0x00, 0x43, 0xee, 0x16, 0x86, 0x00, 0x01, 0xe0, 0x3f, 0x0a, 0x6b, 0x00, 0x00,
    0x00, 0x00, 0xaf, 0xdf, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00);

// The same ARP request carried in VLAN 100 (PCP 0), laid out by hand per IEEE 802.1Q: the kernel
// here has no 8021q module to capture one from.
constexpr auto tagged_frame = make_bytes(
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0x00, 0x64,
    0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    0xc0, 0xa8, 0x40, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x40, 0x01);

const mac_address guest_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address peer_mac = *mac_address::parse("76:db:5c:60:4c:8b");

} // namespace

TEST_CASE("ethernet: deconstruct a captured broadcast ARP frame") {
    const auto frame = ethernet::packet<const_bytes>::checked(arp_request_frame);
    REQUIRE(frame);
    CHECK(frame->destination() == mac_address::broadcast());
    CHECK(frame->source() == guest_mac);
    CHECK(frame->ethertype() == ethernet::ethertype::arp);
    CHECK_FALSE(frame->has_vlan_tag());
    CHECK(frame->header_length() == 14);
    CHECK(frame->payload().size() == 28);
    CHECK(frame->payload()[0] == std::byte{0x00});
}

TEST_CASE("ethernet: repr round-trips captured frames byte-exact") {
    for (const_bytes captured : {const_bytes{arp_request_frame}, const_bytes{echo_reply_frame}}) {
        const auto r = ethernet::repr::parse(captured);
        REQUIRE(r);
        REQUIRE(r->buffer_len() == ethernet::header_len);
        std::vector<std::byte> out(captured.size());
        REQUIRE_FALSE(r->emit(out));
        const auto payload = captured.subspan(r->buffer_len());
        std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(r->buffer_len()));
        CHECK(std::equal(out.begin(), out.end(), captured.begin(), captured.end()));
    }
    const auto reply = ethernet::repr::parse(const_bytes{echo_reply_frame});
    REQUIRE(reply);
    CHECK(reply->source == peer_mac);
    CHECK(reply->destination == guest_mac);
    CHECK(reply->ethertype == ethernet::ethertype::ipv4);
    CHECK_FALSE(reply->vlan_tci);
}

TEST_CASE("ethernet: an 802.1Q tag is recognised and the payload starts past it") {
    const auto r = ethernet::repr::parse(const_bytes{tagged_frame});
    REQUIRE(r);
    REQUIRE(r->vlan_tci);
    CHECK((*r->vlan_tci & 0x0fff) == 100);
    CHECK(r->ethertype == ethernet::ethertype::arp);
    CHECK(r->buffer_len() == 18);
    const ethernet::packet<const_bytes> frame{tagged_frame};
    CHECK(frame.outer_ethertype() == ethernet::ethertype::vlan);
    CHECK(frame.payload().size() == 28);

    std::array<std::byte, 18> header{};
    REQUIRE_FALSE(r->emit(header));
    CHECK(std::equal(header.begin(), header.end(), tagged_frame.begin()));
}

TEST_CASE("ethernet: every truncation is refused") {
    for (std::size_t n = 0; n < ethernet::header_len; ++n) {
        CHECK(ethernet::repr::parse(const_bytes{arp_request_frame}.first(n)).error() == errc::truncated);
    }
    CHECK(ethernet::repr::parse(const_bytes{arp_request_frame}.first(14)));
    // A tag announced but cut off.
    for (std::size_t n = ethernet::header_len; n < ethernet::header_len + ethernet::vlan_tag_len; ++n) {
        CHECK(ethernet::packet<const_bytes>::checked(const_bytes{tagged_frame}.first(n)).error() == errc::truncated);
    }
}

TEST_CASE("ethernet: emit refuses a short buffer and setters write in place") {
    ethernet::repr r{guest_mac, peer_mac, ethernet::ethertype::ipv4, std::nullopt};
    std::array<std::byte, 13> short_buffer{};
    CHECK(r.emit(short_buffer) == errc::buffer_too_small);
    r.vlan_tci = 7;
    std::array<std::byte, 17> short_tagged{};
    CHECK(r.emit(short_tagged) == errc::buffer_too_small);

    auto bytes = echo_reply_frame;
    ethernet::packet<mutable_bytes> frame{bytes};
    frame.set_source(guest_mac);
    frame.set_destination(peer_mac);
    frame.set_ethertype(ethernet::ethertype::arp);
    const ethernet::packet<const_bytes> view{bytes};
    CHECK(view.source() == guest_mac);
    CHECK(view.destination() == peer_mac);
    CHECK(view.ethertype() == ethernet::ethertype::arp);
}
