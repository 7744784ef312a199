// ankanet-embed-host: host mode embedded in a hypervisor. Two VMs on memory links; vm1 gets a DHCP lease, vm2 sends it a frame.
#include <ankanet/host.hpp>

#include <boost/asio/io_context.hpp>
#include <fmt/core.h>

#include <array>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

using namespace ankanet;

int main() {
    boost::asio::io_context io; // the hypervisor's event loop runs the network's links
    auto net = make_host_network(io.get_executor(), {});
    if (!net) return 1;
    const std::array macs{wire::mac_address{{0x52, 0x54, 0, 0, 0, 1}}, wire::mac_address{{0x52, 0x54, 0, 0, 0, 2}}};
    std::vector<backend::memory_endpoint> vms; // the guests' ends: the device model reads and writes these
    for (std::size_t i = 0; i < macs.size(); ++i) {
        auto [network_end, guest_end] = backend::make_memory_link(io.get_executor());
        if (!(*net)->attach(fmt::format("vm{}", i + 1), std::move(network_end), port_mac::custom(macs[i]))) return 2;
        vms.push_back(std::move(guest_end));
    }
    // A guest sends a frame; the loop runs; every frame that reached a guest goes to seen(guest, frame).
    std::array<std::byte, backend::max_frame_len(backend::default_mtu)> buffer{};
    auto send = [&](std::size_t from, wire::const_bytes frame, auto seen) {
        (void)vms[from].send(frame);
        io.poll();
        io.restart();
        for (std::size_t to = 0; to < vms.size(); ++to) {
            while (auto n = vms[to].try_receive(buffer)) seen(to, wire::const_bytes{buffer}.first(*n));
        }
    };
    auto dhcp_step = [&](wire::const_bytes frame, wire::dhcp::message_type want) {
        std::optional<dhcp::server_reply> got;
        send(0, frame, [&](std::size_t to, wire::const_bytes f) {
            auto reply = dhcp::parse_server_reply(f);
            if (to == 0 && reply && reply->type == want) got = *reply;
            if (to == 1) fmt::print("vm2 sees vm1's broadcast ({} bytes)\n", f.size());
        });
        return got;
    };
    const auto offer = dhcp_step(dhcp::discover_frame(macs[0], 42).bytes(), wire::dhcp::message_type::offer);
    if (!offer) return 3;
    fmt::print("vm1 DISCOVER -> OFFER {} from {}\n", offer->yiaddr, offer->source);
    const auto ack = dhcp_step(dhcp::request_frame(macs[0], *offer).bytes(), wire::dhcp::message_type::ack);
    if (!ack) return 4;
    fmt::print("vm1 REQUEST -> ACK {}, lease {} s\n", ack->yiaddr, ack->lease_time.value_or(0));
    std::array<std::byte, 60> hello{}; // vm2 -> vm1, the local experimental EtherType 0x88b5
    (void)wire::ethernet::repr{macs[1], macs[0], 0x88b5, std::nullopt}.emit(hello);
    send(1, hello, [&](std::size_t to, wire::const_bytes f) { fmt::print("vm{} got a {}-byte frame from vm2\n", to + 1, f.size()); });
    fmt::print("network: {} frames in, {} replies from the gateway\n", (*net)->stats().frames_in, (*net)->stats().replies);
    (*net)->stop();
    io.poll();
}
