// nat::icmp_translator with real host sockets, both kinds: the raw socket root has, and ping
// sockets, inside a network namespace whose own net.ipv4.ping_group_range the test widens (the
// sysctl is per namespace, so the machine's setting is never touched). The "remote" is an address
// the test puts on that namespace's loopback, so every echo stays inside it.
#include <ankanet/nat/icmp.hpp>

#include "../support/nat_guest.hpp"
#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <boost/asio/io_context.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <string>

using namespace ankanet;
using test::guest_ip;

namespace {

constexpr wire::ipv4_address remote{198, 51, 100, 1};

nat::egress_allow_list documentation_range() {
    return nat::egress_allow_list{{wire::ipv4_prefix{wire::ipv4_address{198, 51, 100, 0}, 24}}};
}

/// Moves the calling thread into `ns` until destroyed (sockets opened meanwhile stay in it).
class thread_in_netns {
public:
    explicit thread_in_netns(const test::scoped_netns& ns) : home_(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) {
        const int target = ::open(ns.path().c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(target >= 0);
        REQUIRE(::setns(target, CLONE_NEWNET) == 0);
        ::close(target);
    }
    thread_in_netns(const thread_in_netns&) = delete;
    thread_in_netns& operator=(const thread_in_netns&) = delete;
    ~thread_in_netns() {
        (void)::setns(home_, CLONE_NEWNET);
        ::close(home_);
    }

private:
    int home_;
};

void check_echo_reply(const test::frame_bytes& frame, std::uint16_t id, std::uint16_t sequence, std::string_view payload) {
    const auto f = wire::parsed_frame::parse(frame);
    REQUIRE(f.is_ipv4());
    CHECK(f.destination == test::guest_mac);
    CHECK(f.ip_source == remote);
    CHECK(f.ip_destination == guest_ip);
    const auto ip = wire::ipv4::repr::parse(f.ip);
    REQUIRE(ip);
    const auto icmp = wire::icmp::repr::parse(f.ip_payload().first(ip->payload_len)); // checksum verified
    REQUIRE(icmp);
    const auto* reply = std::get_if<wire::icmp::echo_reply>(&icmp->message);
    REQUIRE(reply != nullptr);
    CHECK(reply->identifier == id); // the guest's own id, whatever went on the wire
    CHECK(reply->sequence == sequence);
    CHECK(test::as_text(reply->data) == payload);
}

void ping_through(nat::icmp_socket_kind kind, bool widen_ping_range) {
    const auto missing = test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), missing);
    test::scoped_netns ns;
    std::string setup = "ip link set lo up && ip addr add 198.51.100.1/32 dev lo";
    if (widen_ping_range) setup += " && sysctl -qw net.ipv4.ping_group_range='0 2147483647'";
    else setup += " && sysctl -qw net.ipv4.ping_group_range='1 0'";
    const auto prepared = test::run_in(ns, setup);
    INFO(prepared.output);
    REQUIRE(prepared.status == 0);

    thread_in_netns inside{ns};
    boost::asio::io_context io;
    nat::icmp_limits limits;
    limits.sockets = kind;
    nat::icmp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, documentation_range(), limits};
    INFO(nat.unavailable_reason());
    REQUIRE(nat.available());
    if (kind != nat::icmp_socket_kind::automatic) CHECK(nat.socket_kind() == kind);
    else CHECK(nat.socket_kind() == (widen_ping_range ? nat::icmp_socket_kind::ping : nat::icmp_socket_kind::raw));

    test::recording_context ctx;
    bool woken = false;
    nat.bind_wakeup([&] { woken = true; });
    // Two guests' flows with the same id: each gets its own replies.
    test::recording_context other;
    other.from = port_handle::make(5, 1);
    for (std::uint16_t seq = 1; seq <= 3; ++seq) {
        CHECK(nat.inspect(wire::parsed_frame::parse(test::guest_echo_frame(remote, 0x4242, seq, "ping-payload")), ctx) == inspection::taken);
    }
    CHECK(nat.inspect(wire::parsed_frame::parse(test::guest_echo_frame(remote, 0x4242, 9, "other")), other) == inspection::taken);
    CHECK(nat.flow_count() == 2);
    REQUIRE(test::run_io_until(io, [&] {
        if (woken) {
            woken = false;
            nat.release_held(ctx, 16);
        }
        return ctx.sent.size() == 4;
    }));
    std::size_t mine = 0;
    for (const auto& [to, frame] : ctx.sent) {
        if (to == ctx.from) {
            ++mine;
            check_echo_reply(frame, 0x4242, static_cast<std::uint16_t>(mine), "ping-payload");
        } else {
            CHECK(to == other.from);
            check_echo_reply(frame, 0x4242, 9, "other");
        }
    }
    CHECK(mine == 3);
    CHECK(nat.stats().requests == 4);
    CHECK(nat.stats().replies == 4);
}

} // namespace

TEST_CASE("nat icmp: a guest's pings are carried over a raw socket, with its echo id restored on the replies") {
    ping_through(nat::icmp_socket_kind::raw, false);
}

TEST_CASE("nat icmp: where ping_group_range allows it, unprivileged ping sockets carry the pings") {
    ping_through(nat::icmp_socket_kind::ping, true);
}

TEST_CASE("nat icmp: automatic choice — ping sockets where allowed, else the raw socket") {
    ping_through(nat::icmp_socket_kind::automatic, true);
    ping_through(nat::icmp_socket_kind::automatic, false);
}

TEST_CASE("nat icmp: without ping sockets or a raw socket, one sentence names the sysctl, and pings are refused and counted") {
    const auto missing = test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), missing);
    test::scoped_netns ns;
    REQUIRE(test::run_in(ns, "sysctl -qw net.ipv4.ping_group_range='1 0'").status == 0);
    thread_in_netns inside{ns};
    boost::asio::io_context io;
    nat::icmp_limits limits;
    limits.sockets = nat::icmp_socket_kind::ping; // as for a process without CAP_NET_RAW
    nat::icmp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, documentation_range(), limits};
    CHECK_FALSE(nat.available());
    CHECK(nat.unavailable_reason().find("net.ipv4.ping_group_range") != std::string::npos);
    test::recording_context ctx;
    CHECK(nat.inspect(wire::parsed_frame::parse(test::guest_echo_frame(remote, 1, 1, "x")), ctx) == inspection::taken);
    CHECK(nat.stats().refused_socket == 1);
    REQUIRE(ctx.events.size() == 1);
    CHECK(ctx.events[0].find("ping_group_range") != std::string::npos);
}

TEST_CASE("nat icmp: egress refusal answers administratively prohibited, and pings to the gateway are left to the gateway") {
    boost::asio::io_context io;
    nat::icmp_limits limits;
    nat::icmp_translator<nat::egress_allow_list> nat{io.get_executor(), {}, documentation_range(), limits};
    test::recording_context ctx;
    CHECK(nat.inspect(wire::parsed_frame::parse(test::guest_echo_frame(test::gateway_ip, 1, 1, "gw")), ctx) == inspection::pass);
    CHECK(nat.inspect(wire::parsed_frame::parse(test::guest_echo_frame(wire::ipv4_address{203, 0, 113, 5}, 1, 1, "far")), ctx) ==
          inspection::taken);
    CHECK(nat.stats().refused_egress == 1);
    REQUIRE(ctx.answered.size() == 1);
    const auto f = wire::parsed_frame::parse(ctx.answered[0]);
    const auto icmp = wire::icmp::repr::parse(f.ip_payload());
    REQUIRE(icmp);
    const auto* unreachable = std::get_if<wire::icmp::destination_unreachable>(&icmp->message);
    REQUIRE(unreachable != nullptr);
    CHECK(unreachable->code == wire::icmp::unreachable_code::communication_prohibited);
    CHECK(nat.flow_count() == 0);
}
