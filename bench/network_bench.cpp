// Frames per second through basic_network (a shared_network from make_shared_network), next to the
// bare l2::learning_switch, with the heap allocations each frame costs.
//
// Every case starts warm: both VMs got their lease by DHCP (DISCOVER, OFFER, REQUEST, ACK through
// the network), their MACs were learned from their first frames, and each has resolved the other and
// the gateway by ARP (the ARP guard has seen the claims). Only then is anything timed.
//  * bm_network_core_vm_to_vm: input() of one 98-byte ICMP echo request from VM 1 to VM 2; emit
//    only counts. items_per_second is frames switched per second.
//  * bm_network_core_gateway_ping: input() of an echo request from VM 1 to 192.168.64.1; the
//    responder answers, the reply is queued and switched back to VM 1 (one emit per frame).
//  * bm_switch_core_unicast: the same VM-to-VM frame through a bare l2::learning_switch (a gateway
//    port and two VM ports, addresses learned): what the network adds on top of the switch.
//  * bm_network_memory_*: the same two flows through memory backends (backend::make_memory_link)
//    attached to the network with attach(): the guest end of VM 1 sends a batch of frames (the
//    argument: 64, one full burst, or 1, sparse traffic), the io_context is polled once, and the
//    guest ends are drained with try_receive. Time is per batch; items_per_second counts frames
//    delivered to a guest end.
//  * bm_switch_memory_unicast: the bare switch behind the same glue (backend::make_port over memory
//    links, the switch called from on_frame), for the side-by-side.
// `allocs_per_frame` counts calls of the global operator new (replaced in this file) during the
// timed loop, divided by the frames delivered; the target is 0.
#include <ankanet/backend/memory.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/l2/switch.hpp>
#include <ankanet/shared.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// --- counting operator new (this file is its own benchmark executable) -------------------------
#include "../tests/support/counting_allocator.hpp"

namespace {
using ankanet::test::heap::allocations;
} // namespace

namespace {

using namespace ankanet;
using wire::const_bytes;
using wire::ipv4_address;
using wire::mac_address;
using wire::mutable_bytes;
namespace arp = ankanet::wire::arp;
namespace ethernet = ankanet::wire::ethernet;
namespace icmp = ankanet::wire::icmp;
namespace ipv4 = ankanet::wire::ipv4;
using dhcp_message = ankanet::wire::dhcp::message_type;
using frame_bytes = std::vector<std::byte>;

std::uint64_t allocations_now() { return allocations.load(std::memory_order_relaxed); }

void report(benchmark::State& state, std::uint64_t frames, std::uint64_t allocs) {
    state.SetItemsProcessed(static_cast<std::int64_t>(frames));
    state.counters["allocs_per_frame"] =
        benchmark::Counter(frames == 0 ? 0.0 : static_cast<double>(allocs) / static_cast<double>(frames));
}

const std::array<mac_address, 2> vm_macs{mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}},
                                         mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}}};
const mac_address gateway_mac = default_gateway_mac;
constexpr ipv4_address gateway_ip{192, 168, 64, 1};

/// A 98-byte ICMP echo request (56 bytes of data), as `ping` sends.
frame_bytes ping_frame(mac_address source, mac_address destination, ipv4_address from, ipv4_address to) {
    static constexpr std::array<std::byte, 56> data{};
    const icmp::repr echo{icmp::echo_request{0x1234, 1, data}};
    ipv4::repr ip;
    ip.source = from;
    ip.destination = to;
    ip.protocol = ipv4::protocol::icmp;
    ip.payload_len = echo.buffer_len();
    const ethernet::repr eth{source, destination, ethernet::ethertype::ipv4, std::nullopt};
    frame_bytes frame(eth.buffer_len() + ip.buffer_len() + ip.payload_len);
    (void)eth.emit(frame);
    (void)ip.emit(mutable_bytes{frame}.subspan(eth.buffer_len()));
    (void)echo.emit(mutable_bytes{frame}.subspan(eth.buffer_len() + ip.buffer_len()));
    return frame;
}

frame_bytes arp_frame(const arp::repr& message, mac_address destination) {
    const ethernet::repr eth{message.sender_mac, destination, ethernet::ethertype::arp, std::nullopt};
    frame_bytes frame(ethernet::min_frame_len);
    (void)eth.emit(frame);
    (void)message.emit(mutable_bytes{frame}.subspan(eth.buffer_len()));
    return frame;
}

/// Sends one frame from VM `from` through the fixture and returns the frames that reached VM `to`.
template <class Fixture>
std::vector<frame_bytes> exchange(Fixture& f, std::size_t from, const_bytes frame, std::size_t to) {
    std::vector<frame_bytes> got;
    f.send(from, frame, [&](std::size_t vm, const_bytes out) {
        if (vm == to) got.emplace_back(out.begin(), out.end());
    });
    return got;
}

[[noreturn]] void fail(const char* what) { throw std::runtime_error(what); }

/// The warm-up every network fixture goes through before anything is timed: each VM gets a DHCP
/// lease (its MAC is learned from its DISCOVER), then resolves the other VM and the gateway by ARP.
template <class Fixture>
void warm_up(Fixture& f) {
    for (std::size_t vm = 0; vm < 2; ++vm) {
        const auto xid = static_cast<std::uint32_t>(0x1000 + vm);
        std::optional<dhcp::server_reply> offer;
        for (const auto& reply : exchange(f, vm, dhcp::discover_frame(vm_macs[vm], xid).bytes(), vm)) {
            if (auto r = dhcp::parse_server_reply(const_bytes{reply}); r && r->type == dhcp_message::offer) offer = *r;
        }
        if (!offer) fail("warm-up: no DHCP OFFER");
        std::optional<ipv4_address> leased;
        for (const auto& reply : exchange(f, vm, dhcp::request_frame(vm_macs[vm], *offer).bytes(), vm)) {
            if (auto r = dhcp::parse_server_reply(const_bytes{reply}); r && r->type == dhcp_message::ack) leased = r->yiaddr;
        }
        if (!leased) fail("warm-up: no DHCP ACK");
        f.ips[vm] = *leased;
    }
    for (std::size_t vm = 0; vm < 2; ++vm) {
        const std::size_t peer = 1 - vm;
        const arp::repr who_has{arp::operation::request, vm_macs[vm], f.ips[vm], mac_address{}, f.ips[peer]};
        if (exchange(f, vm, arp_frame(who_has, mac_address::broadcast()), peer).size() != 1) fail("warm-up: ARP request not flooded");
        if (exchange(f, peer, arp_frame(who_has.reply_from(vm_macs[peer]), vm_macs[vm]), vm).size() != 1) {
            fail("warm-up: ARP reply lost");
        }
        const arp::repr for_gateway{arp::operation::request, vm_macs[vm], f.ips[vm], mac_address{}, gateway_ip};
        if (exchange(f, vm, arp_frame(for_gateway, mac_address::broadcast()), vm).size() != 1) fail("warm-up: no ARP reply from the gateway");
    }
}

// --- the pure core ------------------------------------------------------------------------------

/// A shared network driven through input(): two VM ports whose MACs come from their first frames.
struct core_fixture {
    boost::asio::io_context io; // the translators' sockets would run here; VM to VM opens none
    std::unique_ptr<shared_network> net;
    std::array<port_handle, 2> ports{};
    std::array<ipv4_address, 2> ips{};
    network_time now = manual_clock{}.now();

    core_fixture() {
        std::string why;
        auto made = make_shared_network(io.get_executor(), {}, &why);
        if (!made) throw std::runtime_error("make_shared_network: " + why);
        net = std::move(*made);
        for (std::size_t vm = 0; vm < 2; ++vm) {
            auto port = net->add_port(vm == 0 ? "vm1" : "vm2", port_mac::from_first_frame());
            if (!port) fail("add_port failed");
            ports[vm] = *port;
        }
        warm_up(*this);
    }

    std::size_t vm_of(port_handle p) const { return p == ports[0] ? 0 : 1; }

    template <class Sink>
    void send(std::size_t from, const_bytes frame, Sink&& sink) {
        net->input(ports[from], frame, now, [&](port_handle to, const_bytes out) { sink(vm_of(to), out); });
    }
};

void bm_network_core_vm_to_vm(benchmark::State& state) {
    core_fixture f;
    const auto frame = ping_frame(vm_macs[0], vm_macs[1], f.ips[0], f.ips[1]);
    const port_handle vm2 = f.ports[1];
    std::uint64_t delivered = 0;
    auto emit = [&](port_handle to, const_bytes) { if (to == vm2) ++delivered; };
    const auto before = allocations_now();
    for (auto _ : state) f.net->input(f.ports[0], frame, f.now, emit);
    const auto allocs = allocations_now() - before;
    if (delivered != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("a frame was not delivered once");
    report(state, delivered, allocs);
}

void bm_network_core_gateway_ping(benchmark::State& state) {
    core_fixture f;
    const auto frame = ping_frame(vm_macs[0], gateway_mac, f.ips[0], gateway_ip);
    const port_handle vm1 = f.ports[0];
    std::uint64_t replies = 0;
    auto emit = [&](port_handle to, const_bytes) { if (to == vm1) ++replies; };
    const auto before = allocations_now();
    for (auto _ : state) f.net->input(f.ports[0], frame, f.now, emit);
    const auto allocs = allocations_now() - before;
    if (replies != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("a ping was not answered once");
    report(state, replies, allocs);
}

void bm_switch_core_unicast(benchmark::State& state) {
    l2::learning_switch sw;
    const auto gateway = *sw.add_gateway_port();
    const std::array<l2::port_id, 2> vms{*sw.add_vm_port(vm_macs[0]), *sw.add_vm_port(vm_macs[1])};
    const auto now = std::chrono::steady_clock::time_point{std::chrono::hours{24}};
    const ipv4_address a{192, 168, 64, 2};
    const ipv4_address b{192, 168, 64, 3};
    auto ignore = [](l2::port_id, const_bytes) {};
    // Learn every address once, as the network fixture's warm-up does.
    sw.handle(vms[0], ping_frame(vm_macs[0], gateway_mac, a, gateway_ip), now, ignore);
    sw.handle(vms[1], ping_frame(vm_macs[1], gateway_mac, b, gateway_ip), now, ignore);
    sw.handle(gateway, ping_frame(gateway_mac, vm_macs[0], gateway_ip, a), now, ignore);
    const auto frame = ping_frame(vm_macs[0], vm_macs[1], a, b);
    std::uint64_t delivered = 0;
    auto emit = [&](l2::port_id to, const_bytes) { if (to == vms[1]) ++delivered; };
    const auto before = allocations_now();
    for (auto _ : state) {
        const auto d = sw.handle(vms[0], frame, now, emit);
        benchmark::DoNotOptimize(d);
    }
    const auto allocs = allocations_now() - before;
    if (delivered != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("a frame was not delivered once");
    report(state, delivered, allocs);
}

// --- through memory backends --------------------------------------------------------------------

constexpr std::size_t ring_depth = 256;

/// The guest ends of two memory links and what arrived at each since the last drain.
struct guests {
    boost::asio::io_context io;
    std::array<std::optional<backend::memory_endpoint>, 2> ends;
    frame_bytes buffer = frame_bytes(backend::max_frame_len(backend::default_mtu));

    /// Polls the io_context and hands every frame queued at each guest end to `sink(vm, frame)`.
    template <class Sink>
    void run(Sink&& sink) {
        io.poll();
        io.restart();
        for (std::size_t vm = 0; vm < 2; ++vm) {
            while (true) {
                auto n = ends[vm]->try_receive(mutable_bytes{buffer});
                if (!n) break;
                sink(vm, const_bytes{buffer}.first(*n));
            }
        }
    }
    /// Counts what `run` drains, for the timed loop.
    std::uint64_t drain() {
        std::uint64_t n = 0;
        run([&](std::size_t, const_bytes) { ++n; });
        return n;
    }

    template <class Sink>
    void send(std::size_t from, const_bytes frame, Sink&& sink) {
        if (ends[from]->send(frame)) fail("guest send failed");
        run(sink);
    }

    void close() {
        for (auto& end : ends) end->close();
        io.poll();
    }
};

/// A shared network with two VMs attached through memory links.
struct memory_fixture : guests {
    std::unique_ptr<shared_network> net;
    std::array<ipv4_address, 2> ips{};

    memory_fixture() {
        std::string why;
        auto made = make_shared_network(io.get_executor(), {}, &why);
        if (!made) throw std::runtime_error("make_shared_network: " + why);
        net = std::move(*made);
        for (std::size_t vm = 0; vm < 2; ++vm) {
            auto [network_end, guest_end] = backend::make_memory_link(io.get_executor(), backend::default_mtu, ring_depth);
            if (!net->attach(vm == 0 ? "vm1" : "vm2", std::move(network_end))) fail("attach failed");
            ends[vm] = std::move(guest_end);
        }
        warm_up(*this);
    }
    ~memory_fixture() {
        net->stop();
        close();
    }
};

/// state.range(0) frames a batch: 64 (a full burst, port_burst_limit) or 1 (sparse traffic, where
/// every frame is its own burst and pays the receive loop's per-burst costs alone).
template <class Fixture>
void run_memory_case(benchmark::State& state, Fixture& f, const frame_bytes& frame) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    // One untimed batch, so that Asio's handler memory is recycled before the count starts.
    for (std::size_t i = 0; i < batch; ++i) (void)f.ends[0]->send(frame);
    if (f.drain() != batch) state.SkipWithError("warm batch lost frames");
    std::uint64_t sent = 0;
    std::uint64_t delivered = 0;
    const auto before = allocations_now();
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch; ++i) (void)f.ends[0]->send(frame);
        sent += batch;
        delivered += f.drain();
    }
    const auto allocs = allocations_now() - before;
    if (delivered != sent) state.SkipWithError("not every frame was delivered once");
    report(state, delivered, allocs);
}

void bm_network_memory_vm_to_vm(benchmark::State& state) {
    memory_fixture f;
    run_memory_case(state, f, ping_frame(vm_macs[0], vm_macs[1], f.ips[0], f.ips[1]));
}

void bm_network_memory_gateway_ping(benchmark::State& state) {
    memory_fixture f;
    run_memory_case(state, f, ping_frame(vm_macs[0], gateway_mac, f.ips[0], gateway_ip));
}

/// The bare switch behind the network's own glue: backend::make_port over memory links.
struct switch_memory_fixture : guests {
    l2::learning_switch sw;
    std::vector<std::shared_ptr<backend::port>> ports; // indexed by switch port index; [0] the gateway's (none)
    std::chrono::steady_clock::time_point now{std::chrono::hours{24}};

    switch_memory_fixture() {
        (void)*sw.add_gateway_port();
        ports.emplace_back();
        for (std::size_t vm = 0; vm < 2; ++vm) {
            auto [switch_end, guest_end] = backend::make_memory_link(io.get_executor(), backend::default_mtu, ring_depth);
            const auto id = *sw.add_vm_port(vm_macs[vm]);
            auto port = backend::make_port(vm == 0 ? "vm1" : "vm2", std::move(switch_end));
            port->start(
                [this, id](backend::port&, const_bytes frame) {
                    sw.handle(id, frame, now, [this](l2::port_id out, const_bytes bytes) {
                        if (auto& p = ports[out.index()]) (void)p->send(bytes);
                    });
                },
                [](backend::port&, std::error_code) {});
            ports.push_back(std::move(port));
            ends[vm] = std::move(guest_end);
        }
        // Learn both addresses.
        const ipv4_address a{192, 168, 64, 2};
        const ipv4_address b{192, 168, 64, 3};
        run([](std::size_t, const_bytes) {});
        (void)ends[0]->send(ping_frame(vm_macs[0], vm_macs[1], a, b));
        (void)ends[1]->send(ping_frame(vm_macs[1], vm_macs[0], b, a));
        (void)drain();
    }
    ~switch_memory_fixture() {
        for (auto& p : ports) {
            if (p) p->close();
        }
        close();
    }
};

void bm_switch_memory_unicast(benchmark::State& state) {
    switch_memory_fixture f;
    run_memory_case(state, f, ping_frame(vm_macs[0], vm_macs[1], ipv4_address{192, 168, 64, 2}, ipv4_address{192, 168, 64, 3}));
}

BENCHMARK(bm_switch_core_unicast);
BENCHMARK(bm_network_core_vm_to_vm);
BENCHMARK(bm_network_core_gateway_ping);
BENCHMARK(bm_switch_memory_unicast)->Arg(64)->Arg(1);
BENCHMARK(bm_network_memory_vm_to_vm)->Arg(64)->Arg(1);
BENCHMARK(bm_network_memory_gateway_ping)->Arg(64)->Arg(1);

} // namespace
