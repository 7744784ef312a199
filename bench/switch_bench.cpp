// Frames per second through l2::learning_switch with 2, 16 and 256 ports: one gateway port and
// N − 1 VM ports, every address learned beforehand.
//  * bm_switch_unicast: each iteration switches one 98-byte ICMP echo frame from a VM to another
//    VM's known address, cycling ingress over all VMs so that lookups spread over the table. One
//    emit per frame. items_per_second is frames switched per second.
//  * bm_switch_broadcast: each iteration switches one ARP request (broadcast) from a VM, which the
//    switch floods to the N − 1 other ports. items_per_second counts ingress frames;
//    `egress_per_second` counts the copies emitted.
// The emit callback only counts, so the figures are the switch's own cost (no backend, no copy).
//  * bm_switch_memory_unicast: the whole path a hypervisor using the memory backend pays. Every port
//    is a memory link; a guest end sends the echo frame (copy into the switch end's ring), the
//    switch end's receive loop switches it, and the switch sends it out of the egress link (copy
//    into the destination guest's ring), whose receive loop counts it. The io_context is polled
//    once per batch of 64 frames. items_per_second is frames delivered guest to guest.
#include <ankanet/backend/memory.hpp>
#include <ankanet/l2/switch.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace {

using namespace ankanet;
using namespace ankanet::wire;
using ankanet::l2::port_id;

mac_address vm_mac(std::size_t i) {
    return mac_address{{0x52, 0x54, 0x00, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                        static_cast<std::uint8_t>(i)}};
}
const mac_address gateway_mac{{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee}};

std::vector<std::byte> ping_frame(mac_address source, mac_address destination) {
    static constexpr std::array<std::byte, 56> data{};
    const icmp::repr echo{icmp::echo_request{1, 1, data}};
    ipv4::repr ip;
    ip.source = ipv4_address{10, 0, 0, 2};
    ip.destination = ipv4_address{10, 0, 0, 3};
    ip.protocol = ipv4::protocol::icmp;
    ip.payload_len = echo.buffer_len();
    const ethernet::repr eth{source, destination, ethernet::ethertype::ipv4, std::nullopt};
    std::vector<std::byte> frame(eth.buffer_len() + ip.buffer_len() + ip.payload_len);
    (void)eth.emit(frame);
    (void)ip.emit(mutable_bytes{frame}.subspan(eth.buffer_len()));
    (void)echo.emit(mutable_bytes{frame}.subspan(eth.buffer_len() + ip.buffer_len()));
    return frame;
}

std::vector<std::byte> arp_frame(mac_address source) {
    const ethernet::repr eth{source, mac_address::broadcast(), ethernet::ethertype::arp, std::nullopt};
    std::vector<std::byte> frame(ethernet::min_frame_len);
    (void)eth.emit(frame);
    const arp::repr request{arp::operation::request, source, ipv4_address{10, 0, 0, 2}, mac_address{},
                            ipv4_address{10, 0, 0, 1}};
    (void)request.emit(mutable_bytes{frame}.subspan(eth.buffer_len()));
    return frame;
}

struct fixture {
    l2::learning_switch sw;
    port_id gateway;
    std::vector<port_id> vms;
    std::chrono::steady_clock::time_point now{std::chrono::hours{1}};

    explicit fixture(std::size_t ports) : gateway(*sw.add_gateway_port()) {
        for (std::size_t i = 1; i < ports; ++i) vms.push_back(*sw.add_vm_port(vm_mac(i)));
        // Learn every address once.
        auto ignore = [](port_id, const_bytes) {};
        for (std::size_t i = 0; i < vms.size(); ++i) {
            const auto frame = ping_frame(vm_mac(i + 1), gateway_mac);
            sw.handle(vms[i], frame, now, ignore);
        }
        sw.handle(gateway, ping_frame(gateway_mac, vm_mac(1)), now, ignore);
    }
};

void bm_switch_unicast(benchmark::State& state) {
    fixture f{static_cast<std::size_t>(state.range(0))};
    // Frame k goes from VM k to VM k+1 (with 2 ports: from the only VM to the gateway).
    std::vector<std::vector<std::byte>> frames;
    std::vector<port_id> ingress;
    for (std::size_t i = 0; i < f.vms.size(); ++i) {
        const auto destination = f.vms.size() == 1 ? gateway_mac : vm_mac((i + 1) % f.vms.size() + 1);
        frames.push_back(ping_frame(vm_mac(i + 1), destination));
        ingress.push_back(f.vms[i]);
    }
    std::size_t emitted = 0;
    auto emit = [&emitted](port_id, const_bytes) { ++emitted; };
    std::size_t k = 0;
    for (auto _ : state) {
        const auto d = f.sw.handle(ingress[k], const_bytes{frames[k]}, f.now, emit);
        benchmark::DoNotOptimize(d);
        if (++k == frames.size()) k = 0;
    }
    if (emitted != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a unicast frame was not forwarded once");
    state.SetItemsProcessed(state.iterations());
}

void bm_switch_broadcast(benchmark::State& state) {
    fixture f{static_cast<std::size_t>(state.range(0))};
    std::vector<std::vector<std::byte>> frames;
    for (std::size_t i = 0; i < f.vms.size(); ++i) frames.push_back(arp_frame(vm_mac(i + 1)));
    std::size_t emitted = 0;
    auto emit = [&emitted](port_id, const_bytes) { ++emitted; };
    std::size_t k = 0;
    for (auto _ : state) {
        const auto d = f.sw.handle(f.vms[k], const_bytes{frames[k]}, f.now, emit);
        benchmark::DoNotOptimize(d);
        if (++k == frames.size()) k = 0;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["egress_per_second"] = benchmark::Counter(static_cast<double>(emitted), benchmark::Counter::kIsRate);
}

/// One port of the memory-backed switch: the switch's end of a link and the guest's end.
struct memory_port {
    backend::memory_endpoint switch_end;
    backend::memory_endpoint guest_end;
    port_id id;
    std::vector<std::byte> switch_buffer;
    std::vector<std::byte> guest_buffer;
};

void bm_switch_memory_unicast(benchmark::State& state) {
    const auto port_count = static_cast<std::size_t>(state.range(0));
    boost::asio::io_context io;
    l2::learning_switch sw;
    const auto now = std::chrono::steady_clock::time_point{std::chrono::hours{1}};
    std::vector<std::unique_ptr<memory_port>> ports;
    std::size_t delivered = 0;
    for (std::size_t i = 0; i < port_count; ++i) {
        auto [switch_end, guest_end] = backend::make_memory_link(io.get_executor(), backend::default_mtu, 256);
        const auto id = i == 0 ? *sw.add_gateway_port() : *sw.add_vm_port(vm_mac(i));
        const auto frame_len = backend::max_frame_len(backend::default_mtu);
        ports.push_back(std::make_unique<memory_port>(
            memory_port{std::move(switch_end), std::move(guest_end), id, std::vector<std::byte>(frame_len), std::vector<std::byte>(frame_len)}));
    }
    auto by_id = [&](port_id id) -> memory_port& { return *ports[id.index()]; }; // ids are handed out 0, 1, 2, ...
    // The switch side: receive, switch, send out of each egress link.
    std::function<void(memory_port&)> switch_loop = [&](memory_port& p) {
        p.switch_end.async_receive(p.switch_buffer, [&, port = &p](std::error_code ec, std::size_t n) {
            if (ec) return;
            sw.handle(port->id, const_bytes{port->switch_buffer}.first(n), now,
                      [&](port_id out, const_bytes frame) { (void)by_id(out).switch_end.send(frame); });
            switch_loop(*port);
        });
    };
    // The guest side: count what arrives.
    std::function<void(memory_port&)> guest_loop = [&](memory_port& p) {
        p.guest_end.async_receive(p.guest_buffer, [&, port = &p](std::error_code ec, std::size_t) {
            if (ec) return;
            ++delivered;
            guest_loop(*port);
        });
    };
    for (auto& p : ports) {
        switch_loop(*p);
        guest_loop(*p);
    }
    // Learn every VM's address (each pings the gateway), then forget those deliveries.
    for (std::size_t i = 1; i < port_count; ++i) (void)ports[i]->guest_end.send(ping_frame(vm_mac(i), gateway_mac));
    (void)ports[0]->guest_end.send(ping_frame(gateway_mac, vm_mac(1)));
    io.poll();
    io.restart();
    delivered = 0;

    const std::size_t vms = port_count - 1;
    std::vector<std::vector<std::byte>> frames;
    for (std::size_t i = 0; i < vms; ++i) {
        const auto destination = vms == 1 ? gateway_mac : vm_mac((i + 1) % vms + 1);
        frames.push_back(ping_frame(vm_mac(i + 1), destination));
    }
    constexpr std::size_t batch = 64;
    std::size_t k = 0;
    std::size_t sent = 0;
    for (auto _ : state) {
        for (std::size_t b = 0; b < batch; ++b) {
            (void)ports[k + 1]->guest_end.send(frames[k]);
            if (++k == vms) k = 0;
        }
        sent += batch;
        io.poll();
        io.restart();
    }
    if (delivered != sent) state.SkipWithError("not every frame was delivered once");
    state.SetItemsProcessed(static_cast<std::int64_t>(delivered));
    for (auto& p : ports) {
        p->switch_end.close();
        p->guest_end.close();
    }
    io.poll();
}

BENCHMARK(bm_switch_unicast)->Arg(2)->Arg(16)->Arg(256);
BENCHMARK(bm_switch_memory_unicast)->Arg(2)->Arg(16)->Arg(256);
BENCHMARK(bm_switch_broadcast)->Arg(2)->Arg(16)->Arg(256);

} // namespace
