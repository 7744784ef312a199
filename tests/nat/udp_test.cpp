// nat::udp_translator against real sockets on host loopback: a guest's datagrams through the
// gateway address reach a server the test runs on 127.0.0.1, replies come back framed for the
// guest, ICMP errors the host hears are relayed, and refusals are answered and counted.
#include <ankanet/nat/udp.hpp>

#include "../support/nat_guest.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <string>

using namespace ankanet;
using test::gateway_ip;
using test::guest_ip;

namespace {

using loopback_only = nat::egress_allow_list;
namespace ip = boost::asio::ip;

nat::egress_allow_list loopback() { return nat::egress_allow_list{{wire::ipv4_prefix{wire::ipv4_address{127, 0, 0, 0}, 8}}}; }

/// A UDP server on 127.0.0.1 that answers each datagram with "echo:" and the datagram.
struct echo_server {
    explicit echo_server(boost::asio::io_context& io) : socket(io, ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0}) { receive(); }
    std::uint16_t port() const { return socket.local_endpoint().port(); }
    void receive() {
        socket.async_receive_from(boost::asio::buffer(buffer), peer, [this](const boost::system::error_code& ec, std::size_t n) {
            if (ec) return;
            ++received;
            last_peer = peer;
            reply = "echo:" + std::string(buffer.data(), n);
            socket.send_to(boost::asio::buffer(reply), peer);
            receive();
        });
    }
    ip::udp::socket socket;
    std::array<char, 2048> buffer{};
    ip::udp::endpoint peer;
    ip::udp::endpoint last_peer;
    std::string reply;
    int received = 0;
};

struct opened_udp {
    wire::ipv4::repr ip;
    wire::udp::repr udp;
    std::string payload;
};

opened_udp open_udp(const test::frame_bytes& frame) {
    const auto f = wire::parsed_frame::parse(frame);
    REQUIRE(f.is_ipv4());
    CHECK(f.destination == test::guest_mac);
    CHECK(f.source == default_gateway_mac);
    const auto ip = wire::ipv4::repr::parse(f.ip);
    REQUIRE(ip);
    const auto udp = wire::udp::repr::parse(f.ip_payload().first(ip->payload_len), ip->source, ip->destination);
    REQUIRE(udp); // checksum verified
    return {*ip, *udp, test::as_text(f.ip_payload().subspan(wire::udp::header_len, udp->payload_len))};
}

template <class Translator>
void offer(Translator& nat, test::recording_context& ctx, const test::frame_bytes& frame, inspection expected = inspection::taken) {
    CHECK(nat.inspect(wire::parsed_frame::parse(frame), ctx) == expected);
}

} // namespace

TEST_CASE("nat udp: a datagram to the gateway reaches a host loopback server, and its reply comes back to the guest") {
    boost::asio::io_context io;
    echo_server server{io};
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    bool woken = false;
    nat.bind_wakeup([&] { woken = true; });

    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 40000, server.port(), "hello"));
    CHECK(nat.flow_count() == 1);
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(server.received == 1);
    // The guest's source port is kept where the host has it free.
    CHECK(server.last_peer.port() == 40000);

    CHECK(nat.release_held(ctx, 16) == 1);
    REQUIRE(ctx.sent.size() == 1);
    CHECK(ctx.sent[0].first == ctx.from);
    const auto reply = open_udp(ctx.sent[0].second);
    CHECK(reply.ip.source == gateway_ip);           // the host appears as the gateway
    CHECK(reply.ip.destination == guest_ip);
    CHECK(reply.udp.source_port == server.port());
    CHECK(reply.udp.destination_port == 40000);
    CHECK(reply.payload == "echo:hello");
    CHECK(nat.stats().guest_datagrams == 1);
    CHECK(nat.stats().host_datagrams == 1);

    // The same flow carries the next datagram; a second source port is a second flow.
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 40000, server.port(), "again"));
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 40001, server.port(), "other"));
    CHECK(nat.flow_count() == 2);
    REQUIRE(test::run_io_until(io, [&] {
        nat.release_held(ctx, 16);
        return ctx.sent.size() == 3;
    }));
    CHECK(nat.stats().flows_opened == 2);
}

TEST_CASE("nat udp: a closed host port is relayed to the guest as ICMP port unreachable") {
    boost::asio::io_context io;
    // A port that was just free: bind, note it, close.
    std::uint16_t closed_port = 0;
    {
        ip::udp::socket probe{io, ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0}};
        closed_port = probe.local_endpoint().port();
    }
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    bool woken = false;
    nat.bind_wakeup([&] { woken = true; });
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 40100, closed_port, "anyone?"));
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(nat.release_held(ctx, 16) == 1);
    REQUIRE(ctx.sent.size() == 1);
    const auto f = wire::parsed_frame::parse(ctx.sent[0].second);
    REQUIRE(f.protocol == wire::ipv4::protocol::icmp);
    CHECK(f.ip_source == gateway_ip);
    CHECK(f.ip_destination == guest_ip);
    const auto icmp = wire::icmp::repr::parse(f.ip_payload());
    REQUIRE(icmp);
    const auto* unreachable = std::get_if<wire::icmp::destination_unreachable>(&icmp->message);
    REQUIRE(unreachable != nullptr);
    CHECK(unreachable->code == wire::icmp::unreachable_code::port);
    // The quote names the guest's datagram as the guest sent it.
    const auto quoted = wire::ipv4::packet<wire::const_bytes>{unreachable->quoted};
    CHECK(quoted.source() == guest_ip);
    CHECK(quoted.destination() == gateway_ip);
    CHECK(wire::load_be16(unreachable->quoted, 20) == 40100);
    CHECK(wire::load_be16(unreachable->quoted, 22) == closed_port);
    CHECK(nat.stats().icmp_relayed == 1);
}

TEST_CASE("nat udp: the egress policy refuses with ICMP administratively prohibited, counted and reported") {
    boost::asio::io_context io;
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    offer(nat, ctx, test::guest_udp_frame(wire::ipv4_address{198, 51, 100, 7}, 40200, 53, "far"));
    CHECK(nat.flow_count() == 0);
    CHECK(nat.stats().refused_egress == 1);
    REQUIRE(ctx.answered.size() == 1);
    const auto f = wire::parsed_frame::parse(ctx.answered[0]);
    const auto icmp = wire::icmp::repr::parse(f.ip_payload());
    REQUIRE(icmp);
    const auto* unreachable = std::get_if<wire::icmp::destination_unreachable>(&icmp->message);
    REQUIRE(unreachable != nullptr);
    CHECK(unreachable->code == wire::icmp::unreachable_code::communication_prohibited);
    REQUIRE(ctx.events.size() == 1);
    CHECK(ctx.events[0] == "egress policy");
    // A second refusal within the second is counted, not reported again.
    offer(nat, ctx, test::guest_udp_frame(wire::ipv4_address{198, 51, 100, 7}, 40201, 53, "far"));
    CHECK(nat.stats().refused_egress == 2);
    CHECK(ctx.events.size() == 1);
}

TEST_CASE("nat udp: martians, fragments, bad checksums, spoofed senders and the subnet are not carried") {
    boost::asio::io_context io;
    nat::udp_translator<nat::egress_any> nat{io.get_executor(), {}, nat::egress_any{}};
    test::recording_context ctx;
    offer(nat, ctx, test::guest_udp_frame(wire::ipv4_address{127, 0, 0, 1}, 1, 2, "x"), inspection::drop);
    offer(nat, ctx, test::guest_udp_frame(wire::ipv4_address{224, 0, 0, 251}, 5353, 5353, "x"), inspection::drop);
    CHECK(nat.stats().dropped_martian == 2);
    // Another VM in the subnet is the switch's.
    offer(nat, ctx, test::guest_udp_frame(wire::ipv4_address{192, 168, 64, 9}, 1, 2, "x"), inspection::pass);
    auto bad = test::guest_udp_frame(gateway_ip, 40300, 9, "checksum");
    bad.back() = std::byte{0x00}; // payload changed under the checksum
    bad[bad.size() - 2] ^= std::byte{0xff};
    offer(nat, ctx, bad, inspection::drop);
    CHECK(nat.stats().dropped_malformed == 1);
    auto fragment = test::guest_udp_frame(gateway_ip, 40301, 9, "fragment");
    wire::ipv4::packet<wire::mutable_bytes> ip{wire::mutable_bytes{fragment}.subspan(wire::ethernet::header_len)};
    ip.set_more_fragments(true);
    ip.fill_checksum();
    offer(nat, ctx, fragment, inspection::drop);
    CHECK(nat.stats().dropped_fragment == 1);
    // A VM answers for its own traffic only: another MAC as the source, or an address outside the
    // subnet, the gateway's or the broadcast address as the sender.
    test::recording_context other_mac = ctx;
    other_mac.mac = wire::mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x99}};
    offer(nat, other_mac, test::guest_udp_frame(gateway_ip, 1, 2, "x"), inspection::drop);
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 1, 2, "x", wire::ipv4_address{10, 0, 0, 5}), inspection::drop);
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 1, 2, "x", gateway_ip), inspection::drop);
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 1, 2, "x", wire::ipv4_address{192, 168, 64, 255}), inspection::drop);
    CHECK(nat.stats().dropped_spoofed == 4);
    CHECK(nat.flow_count() == 0);
}

TEST_CASE("nat udp: a VM at its flow limit is refused while another VM still opens flows") {
    boost::asio::io_context io;
    echo_server server{io};
    nat::udp_limits limits;
    limits.max_flows_per_vm = 4;
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback(), limits};
    test::recording_context hostile;
    for (std::uint16_t p = 0; p < 20; ++p) offer(nat, hostile, test::guest_udp_frame(gateway_ip, static_cast<std::uint16_t>(41000 + p), server.port(), "x"));
    CHECK(nat.flow_count() == 4);
    CHECK(nat.stats().refused_limit == 16);
    test::recording_context other;
    other.from = port_handle::make(4, 1);
    offer(nat, other, test::guest_udp_frame(gateway_ip, 42000, server.port(), "y"));
    CHECK(nat.flow_count() == 5);
}
