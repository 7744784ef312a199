// Frames per second through l2::learning_switch with 2, 16 and 256 ports: one gateway port and
// N − 1 VM ports, every address learned beforehand.
//  * bm_switch_unicast: each iteration switches one 98-byte ICMP echo frame from a VM to another
//    VM's known address, cycling ingress over all VMs so that lookups spread over the table. One
//    emit per frame. items_per_second is frames switched per second.
//  * bm_switch_broadcast: each iteration switches one ARP request (broadcast) from a VM, which the
//    switch floods to the N − 1 other ports. items_per_second counts ingress frames;
//    `egress_per_second` counts the copies emitted.
// The emit callback only counts, so the figures are the switch's own cost (no backend, no copy).
#include <ankanet/l2/switch.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
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

BENCHMARK(bm_switch_unicast)->Arg(2)->Arg(16)->Arg(256);
BENCHMARK(bm_switch_broadcast)->Arg(2)->Arg(16)->Arg(256);

} // namespace
