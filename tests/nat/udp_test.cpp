// nat::udp_translator against real sockets on host loopback: a guest's datagrams through the
// gateway address reach a server the test runs on 127.0.0.1, replies come back framed for the
// guest, ICMP errors the host hears are relayed, and refusals are answered and counted.
#include <ankanet/nat/udp.hpp>

#include <ankanet/nat/inbound.hpp>

#include "../support/nat_guest.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace ankanet;
using test::gateway_ip;
using test::guest_ip;

namespace {

using loopback_only = nat::egress_allow_list;
namespace ip = boost::asio::ip;

nat::egress_allow_list nowhere() { return nat::egress_allow_list{std::vector<wire::ipv4_prefix>{}}; }
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

/// Hands one frame to the translator as a burst of its own, as basic_network::input() does.
template <class Translator>
void offer(Translator& nat, test::recording_context& ctx, const test::frame_bytes& frame, inspection expected = inspection::taken) {
    CHECK(nat.inspect(wire::parsed_frame::parse(frame), ctx) == expected);
    nat.end_burst(ctx);
}

/// A UDP socket on 127.0.0.1 the test reads and writes itself, without the io_context: loopback
/// delivers a datagram by the time the send that carried it returns.
struct plain_server {
    explicit plain_server(boost::asio::io_context& io) : socket(io, ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0}) {}
    std::uint16_t port() const { return socket.local_endpoint().port(); }
    /// Every datagram queued now, in order; `peer` is the last one's sender.
    std::vector<std::string> take() {
        std::vector<std::string> got;
        while (socket.available() > 0) {
            std::array<char, 2048> buffer{};
            const std::size_t n = socket.receive_from(boost::asio::buffer(buffer), peer);
            got.emplace_back(buffer.data(), n);
        }
        return got;
    }
    ip::udp::socket socket;
    ip::udp::endpoint peer;
};

std::vector<std::string> numbered(std::string_view prefix, int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) out.push_back(std::string(prefix) + std::to_string(i));
    return out;
}

/// The payloads of the UDP frames the translator sent to the guest from `remote_port`, in order.
std::vector<std::string> payloads_from(const test::recording_context& ctx, std::uint16_t remote_port) {
    std::vector<std::string> out;
    for (const auto& [to, frame] : ctx.sent) {
        const auto datagram = open_udp(frame);
        if (datagram.udp.source_port == remote_port) out.push_back(datagram.payload);
    }
    return out;
}

/// A port on 127.0.0.1 that was just free: bound, noted, closed.
std::uint16_t just_closed_port(boost::asio::io_context& io) {
    ip::udp::socket probe{io, ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0}};
    return probe.local_endpoint().port();
}

/// A translator on host loopback whose guest sends to a closed port there, and a flag its wakeup
/// sets: the host answers the guest's datagrams with ICMP port unreachable.
struct closed_port_fixture {
    closed_port_fixture() { nat.bind_wakeup([this] { woken = true; }); }
    boost::asio::io_context io;
    std::uint16_t closed_port = just_closed_port(io);
    ankanet::nat::udp_translator<loopback_only> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    bool woken = false;
};

/// What `frame`, sent to the guest, says: ICMP port unreachable from the gateway, quoting the
/// guest's datagram to `closed_port`. Its quote points into `frame`.
wire::icmp::destination_unreachable port_unreachable(const test::frame_bytes& frame, std::uint16_t closed_port) {
    const auto f = wire::parsed_frame::parse(frame);
    REQUIRE(f.protocol == wire::ipv4::protocol::icmp);
    CHECK(f.ip_source == gateway_ip);
    CHECK(f.ip_destination == guest_ip);
    const auto icmp = wire::icmp::repr::parse(f.ip_payload());
    REQUIRE(icmp);
    const auto* unreachable = std::get_if<wire::icmp::destination_unreachable>(&icmp->message);
    REQUIRE(unreachable != nullptr);
    CHECK(unreachable->code == wire::icmp::unreachable_code::port);
    CHECK(wire::load_be16(unreachable->quoted, 22) == closed_port);
    return *unreachable;
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

TEST_CASE_METHOD(closed_port_fixture, "nat udp: a closed host port is relayed to the guest as ICMP port unreachable") {
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 40100, closed_port, "anyone?"));
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(nat.release_held(ctx, 16) == 1);
    REQUIRE(ctx.sent.size() == 1);
    const auto unreachable = port_unreachable(ctx.sent[0].second, closed_port);
    // The quote names the guest's datagram as the guest sent it.
    const auto quoted = wire::ipv4::packet<wire::const_bytes>{unreachable.quoted};
    CHECK(quoted.source() == guest_ip);
    CHECK(quoted.destination() == gateway_ip);
    CHECK(wire::load_be16(unreachable.quoted, 20) == 40100);
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

TEST_CASE("nat udp: a burst's datagrams go out with one sendmmsg per flow, each flow's in the guest's order") {
    boost::asio::io_context io;
    plain_server a{io};
    plain_server b{io};
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;

    // One burst: 20 datagrams to server a and 10 to server b, interleaved, as the port's arena
    // would hold them (every frame alive until the burst ends).
    std::vector<test::frame_bytes> burst;
    for (int i = 0; i < 20; ++i) {
        burst.push_back(test::guest_udp_frame(gateway_ip, 43000, a.port(), "a" + std::to_string(i)));
        if (i % 2 == 1) burst.push_back(test::guest_udp_frame(gateway_ip, 43001, b.port(), "b" + std::to_string(i / 2)));
    }
    for (const auto& frame : burst) CHECK(nat.inspect(wire::parsed_frame::parse(frame), ctx) == inspection::taken);
    CHECK(nat.flow_count() == 2);
    // Nothing has left before the burst ends.
    CHECK(nat.stats().guest_datagrams == 0);
    CHECK(a.take().empty());

    nat.end_burst(ctx);
    CHECK(nat.stats().batches_sent == 2); // 30 datagrams, two syscalls
    CHECK(nat.stats().guest_datagrams == 30);
    CHECK(nat.stats().dropped_send == 0);
    CHECK(a.take() == numbered("a", 0, 20));
    CHECK(a.peer.port() == 43000);
    CHECK(b.take() == numbered("b", 0, 10));

    // The next burst on the same flow is its own batch.
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 43000, a.port(), "later"));
    CHECK(nat.stats().batches_sent == 3);
    CHECK(a.take() == std::vector<std::string>{"later"});
    // Ending a burst that queued nothing sends nothing.
    nat.end_burst(ctx);
    CHECK(nat.stats().batches_sent == 3);
}

TEST_CASE("nat udp: a burst longer than the queue is sent in order as the queue fills") {
    boost::asio::io_context io;
    plain_server server{io};
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    constexpr int count = static_cast<int>(decltype(nat)::tx_queue_depth) + 10;
    std::vector<test::frame_bytes> burst;
    for (int i = 0; i < count; ++i) burst.push_back(test::guest_udp_frame(gateway_ip, 43100, server.port(), "d" + std::to_string(i)));
    for (const auto& frame : burst) CHECK(nat.inspect(wire::parsed_frame::parse(frame), ctx) == inspection::taken);
    CHECK(nat.stats().batches_sent == 1); // the full queue went when the next datagram came
    nat.end_burst(ctx);
    CHECK(nat.stats().batches_sent == 2);
    CHECK(server.take() == numbered("d", 0, count));
}

TEST_CASE("nat udp: replies read by one recvmmsg all reach the guest, in order, within the room given") {
    boost::asio::io_context io;
    plain_server server{io};
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    REQUIRE(nat.rx_batch() == decltype(nat)::rx_batch_limit); // MTU 1500
    test::recording_context ctx;
    bool woken = false;
    nat.bind_wakeup([&] { woken = true; });
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 43200, server.port(), "hi"));
    REQUIRE(server.take() == std::vector<std::string>{"hi"});

    for (const auto& reply : numbered("r", 0, 12)) server.socket.send_to(boost::asio::buffer(reply), server.peer);
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(nat.release_held(ctx, 16) == 12);
    CHECK(nat.stats().batches_received == 1); // twelve datagrams, one read
    CHECK(nat.stats().host_datagrams == 12);
    CHECK(payloads_from(ctx, server.port()) == numbered("r", 0, 12));
    for (const auto& [to, frame] : ctx.sent) {
        CHECK(to == ctx.from);
        const auto datagram = open_udp(frame); // headers and checksum as the guest expects
        CHECK(datagram.ip.source == gateway_ip);
        CHECK(datagram.ip.destination == guest_ip);
        CHECK(datagram.udp.destination_port == 43200);
    }

    // More replies than the room: the rest wait for the next release, still in order.
    ctx.sent.clear();
    woken = false;
    for (const auto& reply : numbered("s", 0, 20)) server.socket.send_to(boost::asio::buffer(reply), server.peer);
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(nat.release_held(ctx, 16) == 16);
    CHECK(nat.release_held(ctx, 16) == 4);
    CHECK(payloads_from(ctx, server.port()) == numbered("s", 0, 20));
    CHECK(nat.stats().dropped_too_long == 0);
}

TEST_CASE("nat udp: a flooded flow does not starve another, and yields the event loop after its turn's share") {
    boost::asio::io_context io;
    plain_server loud{io};
    plain_server quiet{io};
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    int wakeups = 0;
    nat.bind_wakeup([&] { ++wakeups; });
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 43300, loud.port(), "go"));
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 43301, quiet.port(), "go"));
    REQUIRE(loud.take().size() == 1);
    REQUIRE(quiet.take().size() == 1);

    // The loud flow's replies are queued first, then the quiet one's (120 small datagrams stay
    // well within a socket's default receive buffer).
    for (const auto& reply : numbered("l", 0, 120)) loud.socket.send_to(boost::asio::buffer(reply), loud.peer);
    for (const auto& reply : numbered("q", 0, 3)) quiet.socket.send_to(boost::asio::buffer(reply), quiet.peer);
    REQUIRE(test::run_io_until(io, [&] { return wakeups >= 1; }));

    // Each visit reads one batch (here the room: 16, the network's default reply queue), then the
    // flow goes to the back: whichever flow woke first, the quiet one's replies come within the
    // first two releases.
    const std::size_t room = 16;
    std::size_t this_turn = nat.release_held(ctx, room);
    this_turn += nat.release_held(ctx, room);
    CHECK(payloads_from(ctx, quiet.port()) == numbered("q", 0, 3));
    // One turn of the event loop hands over at most per_turn_limit datagrams; then the
    // translator yields: releases give nothing until its next turn, posted behind the rest.
    for (std::size_t n = nat.release_held(ctx, room); n != 0; n = nat.release_held(ctx, room)) this_turn += n;
    CHECK(this_turn == decltype(nat)::per_turn_limit);
    const int woken_before = wakeups;
    io.restart();
    io.poll(); // the posted turn asks the network to release again
    CHECK(wakeups == woken_before + 1);
    REQUIRE(test::run_io_until(io, [&] {
        nat.release_held(ctx, room);
        return nat.stats().host_datagrams == 123;
    }));
    CHECK(payloads_from(ctx, loud.port()) == numbered("l", 0, 120));
    CHECK(payloads_from(ctx, quiet.port()) == numbered("q", 0, 3));
}

TEST_CASE_METHOD(closed_port_fixture,
                 "nat udp: a burst to a closed port is refused by the host, and the guest still hears ICMP port unreachable") {
    std::vector<test::frame_bytes> burst;
    for (int i = 0; i < 3; ++i) burst.push_back(test::guest_udp_frame(gateway_ip, 43400, closed_port, "anyone?"));
    for (const auto& frame : burst) CHECK(nat.inspect(wire::parsed_frame::parse(frame), ctx) == inspection::taken);
    nat.end_burst(ctx);
    // Each datagram left, or was refused by the error an earlier one's ICMP left on the socket.
    CHECK(nat.stats().guest_datagrams + nat.stats().dropped_send == 3);
    CHECK(nat.stats().guest_datagrams >= 1);
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    REQUIRE(test::run_io_until(io, [&] {
        nat.release_held(ctx, 16);
        return nat.stats().icmp_relayed >= 1;
    }));
    REQUIRE_FALSE(ctx.sent.empty());
    for (const auto& [to, frame] : ctx.sent) port_unreachable(frame, closed_port);
    CHECK(nat.stats().icmp_relayed == ctx.sent.size());
}

namespace {

/// A forward's listener on 127.0.0.1 (SO_REUSEADDR and SO_REUSEPORT) and, made as a forward makes
/// it for a new client, a socket bound to the same address and port and connected to the client.
struct forward_like {
    explicit forward_like(boost::asio::io_context& io) : listener(io) {
        listener.open(ip::udp::v4());
        reuse(listener);
        listener.bind(ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), 0});
    }
    static void reuse(ip::udp::socket& s) {
        s.set_option(ip::udp::socket::reuse_address(true));
        const int on = 1;
        REQUIRE(::setsockopt(s.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0);
    }
    std::uint16_t port() const { return listener.local_endpoint().port(); }
    ip::udp::socket connected_to(boost::asio::io_context& io, const ip::udp::endpoint& client) const {
        ip::udp::socket s{io};
        s.open(ip::udp::v4());
        reuse(s);
        s.bind(listener.local_endpoint());
        s.connect(client);
        return s;
    }
    ip::udp::socket listener;
};

/// The request a forward would make for `client` towards the guest's `guest_port` (a loopback
/// client is shown as the gateway).
nat::inbound_udp inbound_request(ip::udp::socket socket, std::uint16_t client_port, std::uint16_t guest_port,
                                 port_handle vm = port_handle::make(3, 1)) {
    return nat::inbound_udp{vm, test::guest_mac, guest_ip, guest_port,
                            nat::remote_as_seen(wire::ipv4_address{127, 0, 0, 1}, nat::translation_config{}.subnet),
                            client_port, std::move(socket)};
}

} // namespace

TEST_CASE("nat udp: a forward's client is adopted as a flow: its datagrams reach the guest, the guest's answers leave from the forward's port") {
    boost::asio::io_context io;
    // Nothing outbound is allowed: the inbound flow does not ask the egress policy.
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, nowhere()};
    test::recording_context ctx;
    bool woken = false;
    nat.bind_wakeup([&] { woken = true; });
    forward_like forward{io};
    plain_server client{io};

    // The client's first datagram reaches the forward's listener.
    client.socket.send_to(boost::asio::buffer(std::string_view{"first"}), ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), forward.port()});
    std::array<char, 64> buffer{};
    ip::udp::endpoint from;
    REQUIRE(forward.listener.receive_from(boost::asio::buffer(buffer), from) == 5);
    REQUIRE(from.port() == client.port());

    auto request = inbound_request(forward.connected_to(io, from), client.port(), 5353);
    CHECK(request.remote_address == gateway_ip);
    CHECK_FALSE(nat.carry_inbound(std::move(request)));
    CHECK(nat.flow_count() == 1);
    CHECK(nat.stats().flows_inbound == 1);
    CHECK(nat.stats().flows_opened == 0);
    CHECK(nat.stats().refused_egress == 0);

    // The client's next datagram goes to the adopted socket, not the listener, and to the guest
    // from the gateway and the client's port.
    client.socket.send_to(boost::asio::buffer(std::string_view{"second"}), ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), forward.port()});
    REQUIRE(test::run_io_until(io, [&] { return woken; }));
    CHECK(forward.listener.available() == 0);
    CHECK(nat.release_held(ctx, 16) == 1);
    REQUIRE(ctx.sent.size() == 1);
    CHECK(ctx.sent[0].first == port_handle::make(3, 1));
    const auto in = open_udp(ctx.sent[0].second);
    CHECK(in.ip.source == gateway_ip);
    CHECK(in.ip.destination == guest_ip);
    CHECK(in.udp.source_port == client.port());
    CHECK(in.udp.destination_port == 5353);
    CHECK(in.payload == "second");
    CHECK(nat.stats().host_datagrams == 1);

    // The guest answers the address and port it was shown: the adopted flow carries it, and the
    // client hears it from the port it wrote to.
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 5353, client.port(), "answer"));
    CHECK(nat.flow_count() == 1);
    CHECK(nat.stats().flows_opened == 0);
    CHECK(nat.stats().guest_datagrams == 1);
    CHECK(client.take() == std::vector<std::string>{"answer"});
    CHECK(client.peer.address() == ip::make_address_v4("127.0.0.1"));
    CHECK(client.peer.port() == forward.port());
}

TEST_CASE("nat udp: a forward's client whose key a flow holds already is refused, and the flow is kept") {
    boost::asio::io_context io;
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback()};
    test::recording_context ctx;
    forward_like forward{io};
    plain_server client{io};
    const ip::udp::endpoint client_at{ip::make_address_v4("127.0.0.1"), client.port()};

    REQUIRE_FALSE(nat.carry_inbound(inbound_request(forward.connected_to(io, client_at), client.port(), 5354)));
    auto again = inbound_request(forward.connected_to(io, client_at), client.port(), 5354);
    CHECK(nat.carry_inbound(std::move(again)) == ankanet::nat::flow_errc::flow_exists);
    CHECK(again.socket.is_open()); // still the caller's
    CHECK(nat.flow_count() == 1);
    CHECK(nat.stats().flows_inbound == 1);
    CHECK(nat.stats().refused_limit == 0);

    // The flow the guest opened first holds its key too: a forward's client with that tuple is refused.
    plain_server server{io};
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 5355, server.port(), "mine"));
    REQUIRE(nat.stats().flows_opened == 1);
    CHECK(nat.carry_inbound(inbound_request(forward.connected_to(io, client_at), server.port(), 5355)) == ankanet::nat::flow_errc::flow_exists);
    CHECK(nat.flow_count() == 2);

    // The first flow still carries the guest's answers through the forward's port.
    offer(nat, ctx, test::guest_udp_frame(gateway_ip, 5354, client.port(), "still"));
    CHECK(client.take() == std::vector<std::string>{"still"});
    CHECK(client.peer.port() == forward.port());

    // A stopped translator adopts nothing.
    nat.stop();
    CHECK(nat.carry_inbound(inbound_request(forward.connected_to(io, client_at), client.port(), 5356)) == std::errc::operation_canceled);
    CHECK(nat.stats().flows_inbound == 1);
}

TEST_CASE("nat udp: a forward's clients count against the VM's flow limit, refused and counted, another VM unaffected") {
    boost::asio::io_context io;
    nat::udp_limits limits;
    limits.max_flows_per_vm = 2;
    nat::udp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, loopback(), limits};
    forward_like forward{io};
    std::vector<std::unique_ptr<plain_server>> clients;
    for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<plain_server>(io));
    const auto at = [&](int i) { return ip::udp::endpoint{ip::make_address_v4("127.0.0.1"), clients[static_cast<std::size_t>(i)]->port()}; };

    CHECK_FALSE(nat.carry_inbound(inbound_request(forward.connected_to(io, at(0)), clients[0]->port(), 6000)));
    CHECK_FALSE(nat.carry_inbound(inbound_request(forward.connected_to(io, at(1)), clients[1]->port(), 6000)));
    auto over = inbound_request(forward.connected_to(io, at(2)), clients[2]->port(), 6000);
    CHECK(nat.carry_inbound(std::move(over)) == ankanet::nat::flow_errc::vm_limit);
    CHECK(over.socket.is_open());
    CHECK(nat.flow_count() == 2);
    CHECK(nat.stats().flows_inbound == 2);
    CHECK(nat.stats().refused_limit == 1);

    // Another VM has its own share.
    CHECK_FALSE(nat.carry_inbound(inbound_request(forward.connected_to(io, at(3)), clients[3]->port(), 6000, port_handle::make(4, 1))));
    CHECK(nat.flow_count() == 3);
    CHECK(nat.stats().flows_inbound == 3);
    CHECK(nat.stats().refused_limit == 1);
}
