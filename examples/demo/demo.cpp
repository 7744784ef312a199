// ankanet-demo: a guest with a real kernel stack talks to ankanet's gateway.
//
// As root (what scripts/demo.sh runs), the demo makes a network namespace — a guest with its own
// kernel — creates a TAP inside it with ankanet, and lets the guest's own `ping` reach the gateway
// 192.168.64.1, which ankanet answers (ARP, then ICMP echo). Without root it shows the same
// exchange over an in-memory link, with frames built by ankanet's wire layer standing in for the
// guest. Either way it prints what crossed and the counters, and cleans up after itself.
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/config.hpp>
#include <ankanet/gateway/responder.hpp>
#include <ankanet/version.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

namespace {

namespace backend = ankanet::backend;
namespace wire = ankanet::wire;

const auto subnet = *ankanet::default_subnet(ankanet::network_mode::shared);

std::string describe(wire::const_bytes frame) {
    const auto eth = wire::ethernet::repr::parse(frame);
    if (!eth) return "(not Ethernet)";
    if (eth->ethertype == wire::ethernet::ethertype::arp) {
        const auto arp = wire::arp::repr::parse(frame.subspan(eth->buffer_len()));
        if (!arp) return "ARP (malformed)";
        return arp->operation == wire::arp::operation::request
                   ? fmt::format("ARP who-has {} tell {}", arp->target_ip, arp->sender_ip)
                   : fmt::format("ARP {} is-at {}", arp->sender_ip, arp->sender_mac);
    }
    if (eth->ethertype == wire::ethernet::ethertype::ipv4) {
        const auto ip = wire::ipv4::repr::parse(frame.subspan(eth->buffer_len()));
        if (!ip) return "IPv4 (malformed)";
        return fmt::format("IPv4 {} > {} protocol {} ({} bytes)", ip->source, ip->destination, ip->protocol, ip->payload_len);
    }
    if (eth->ethertype == wire::ethernet::ethertype::ipv6) return "IPv6 (not served yet)";
    return fmt::format("ethertype {:#06x}", eth->ethertype);
}

/// Serves `port` with the gateway until it closes, printing every frame.
void serve(const std::shared_ptr<backend::port>& port, ankanet::gateway::responder& gateway) {
    port->start(
        [&gateway](backend::port& from, wire::const_bytes frame) {
            fmt::print("  guest   -> ankanet  {}\n", describe(frame));
            gateway.handle(frame, [&from](wire::const_bytes reply) {
                fmt::print("  ankanet -> guest    {}\n", describe(reply));
                from.send(reply);
            });
            std::fflush(stdout); // interleave with the guest's own output in order
        },
        [](backend::port&, std::error_code) {});
}

int run(const std::string& command) {
    fmt::print("$ {}\n", command);
    std::fflush(stdout);
    return std::system(command.c_str());
}

/// The guest is a network namespace; its kernel pings the gateway through a TAP.
int namespace_demo() {
    const std::string ns = fmt::format("ankanet-demo-{}", ::getpid());
    if (run("ip netns add " + ns) != 0) return 1;

    boost::asio::io_context io;
    backend::tap_options options;
    options.set_interface_mtu = true;
    options.mac = *ankanet::mac_address::parse("52:54:00:12:34:56");
    auto tap = backend::tap_device::open_in_netns(io.get_executor(), "/run/netns/" + ns, "eth0", options);
    if (!tap) {
        fmt::print(stderr, "cannot create a TAP in the namespace: {}\n", tap.error().message());
        run("ip netns del " + ns);
        return 1;
    }
    ankanet::gateway::responder gateway{subnet.address(), ankanet::default_gateway_mac};
    auto port = backend::make_port("demo guest", std::move(*tap));
    serve(port, gateway);

    // The guest side runs in another thread while this one serves frames.
    auto guest = std::async(std::launch::async, [&] {
        const int up = run(fmt::format("ip netns exec {} sh -c 'ip link set lo up && ip link set eth0 up && "
                                       "ip addr add 192.168.64.2/24 dev eth0'", ns));
        const int ping = up == 0 ? run(fmt::format("ip netns exec {} ping -c 3 -i 0.2 -W 2 {}", ns, subnet.address())) : up;
        boost::asio::post(io, [&] { port->close(); });
        return ping;
    });
    io.run();
    const int ping = guest.get();
    run("ip netns del " + ns);

    const auto& s = gateway.stats();
    fmt::print("\ngateway {}: {} ARP replies, {} echo replies; TAP rx {} frames, tx {} frames\n", subnet.address(),
               s.arp_replies, s.echo_replies, port->stats().rx_frames, port->stats().tx_frames);
    fmt::print("{}\n", ping == 0 ? "the guest reached the gateway" : "the guest did NOT reach the gateway");
    return ping == 0 ? 0 : 1;
}

/// Without root: the guest is the other end of an in-memory link.
int memory_demo() {
    boost::asio::io_context io;
    auto [guest, host] = backend::make_memory_link(io.get_executor());
    ankanet::gateway::responder gateway{subnet.address(), ankanet::default_gateway_mac};
    auto port = backend::make_port("demo guest", std::move(host));
    serve(port, gateway);

    const auto guest_mac = *ankanet::mac_address::parse("52:54:00:12:34:56");
    const wire::ethernet::repr eth{guest_mac, ankanet::mac_address::broadcast(), wire::ethernet::ethertype::arp, std::nullopt};
    const wire::arp::repr who_has{wire::arp::operation::request, guest_mac, ankanet::ipv4_address{192, 168, 64, 2},
                                  ankanet::mac_address{}, subnet.address()};
    std::array<std::byte, 42> frame{};
    if (eth.emit(frame) || who_has.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len()))) return 1;
    if (guest.send(frame)) return 1;

    std::vector<std::byte> buffer(backend::max_frame_len(guest.mtu()));
    guest.async_receive(buffer, [&](std::error_code ec, std::size_t n) {
        if (!ec) fmt::print("  the guest learned: {}\n", describe(wire::const_bytes{buffer.data(), n}));
        port->close();
    });
    io.run();
    return gateway.stats().arp_replies == 1 ? 0 : 1;
}

} // namespace

int main() {
    fmt::print("ankanet {} demo: a guest and the gateway {}\n\n", ankanet::version_string, subnet.address());
    if (::geteuid() == 0 && ::access("/dev/net/tun", R_OK | W_OK) == 0) return namespace_demo();
    fmt::print("(not root: the guest is simulated over an in-memory link)\n");
    return memory_demo();
}
