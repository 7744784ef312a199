#include <ankanet/sandbox/run.hpp>

#include <ankanet/shared.hpp>

#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace ankanet;

namespace {

/// A shared network whose NAT reaches host loopback only and whose DNS relays to a dead port.
std::unique_ptr<shared_network> loopback_network(boost::asio::io_context& io, std::optional<address_range> range = std::nullopt) {
    gateway_network_options options;
    std::string why;
    auto egress = nat::parse_egress("127.0.0.0/8", &why);
    REQUIRE(egress);
    options.egress = std::move(*egress);
    options.dns_upstreams.servers.push_back(*dns::parse_upstream("127.0.0.1:9"));
    options.dhcp_range = range;
    auto made = make_shared_network(io.get_executor(), std::move(options), &why);
    INFO(why);
    REQUIRE(made);
    return std::move(*made);
}

} // namespace

TEST_CASE("sandbox claim_lease: the server's own lease, for the port's MAC, renewed in place") {
    boost::asio::io_context io;
    auto net = loopback_network(io);
    auto port = net->add_port("cmd", port_mac::random());
    REQUIRE(port);
    const auto mac = *net->mac(*port);
    auto ack = sandbox::claim_lease(*net, *port);
    REQUIRE(ack);
    CHECK(ack->type == wire::dhcp::message_type::ack);
    CHECK(ack->client == mac);
    CHECK(ack->yiaddr == wire::ipv4_address{192, 168, 64, 2});
    CHECK(ack->server_id == wire::ipv4_address{192, 168, 64, 1});
    // What the DHCP server recorded is what the command's interface gets.
    const auto& dhcp = net->service<dhcp::service>();
    CHECK(dhcp.lease_holder(ack->yiaddr, net->clock().now()) == mac);
    auto renewed = sandbox::claim_lease(*net, *port, *ack);
    REQUIRE(renewed);
    CHECK(renewed->yiaddr == ack->yiaddr);
    CHECK(renewed->xid != ack->xid);
    net->stop();
    io.poll();
}

TEST_CASE("sandbox claim_lease: no offer from an exhausted pool, no MAC for a port that has none yet") {
    boost::asio::io_context io;
    const wire::ipv4_address only{192, 168, 64, 2};
    auto net = loopback_network(io, address_range{only, only});
    auto first = net->add_port("first", port_mac::random());
    auto second = net->add_port("second", port_mac::random());
    REQUIRE((first && second));
    REQUIRE(sandbox::claim_lease(*net, *first));
    CHECK(sandbox::claim_lease(*net, *second).error() == sandbox::lease_claim_errc::no_offer);
    auto unknown = net->add_port("qemu", port_mac::from_first_frame());
    REQUIRE(unknown);
    CHECK(sandbox::claim_lease(*net, *unknown).error() == sandbox::lease_claim_errc::no_mac);
    net->stop();
    io.poll();
}

TEST_CASE("sandbox run_command: the command runs on the network with its lease, its exit status comes back") {
    const std::string missing_requirement = test::missing_netns_requirements();
    ANKANET_REQUIRE_ENVIRONMENT(missing_requirement.empty(), "run_command needs " << missing_requirement);
    boost::asio::io_context io;
    auto net = loopback_network(io);
    sandbox::run_options options;
    // The gateway answers the command's ping: the TAP is connected and the address is right.
    options.spawn.command = {"sh", "-c", "ping -c1 -W3 192.168.64.1 >/dev/null && exit 5"};
    std::vector<std::string> lines;
    options.log = [&](std::string_view line) { lines.emplace_back(line); };
    std::string why;
    const auto status = sandbox::run_command(io, *net, std::move(options), &why);
    INFO(why);
    REQUIRE(status);
    CHECK(*status == 5);
    REQUIRE(lines.size() == 1);
    CHECK(lines.front().starts_with("eth0 192.168.64.2/24 on "));
}
