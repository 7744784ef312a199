// Compile-only-what-you-use (run_modes_test.cmake, CHECK=usage): a program whose only ankanet
// include is the bridge mode. The LAN's DHCP server, router and DNS serve bridged VMs, so its binary
// must hold no DHCP, NAT, DNS or gateway-service code — but does hold the uplink and the MAC
// translator (the positive control).
#include <ankanet/bridge.hpp>

#include <boost/asio/io_context.hpp>

#include <array>
#include <cstddef>

namespace {

/// A memory link end with a MAC, standing for the host interface.
struct interface_end {
    using executor_type = ankanet::backend::memory_endpoint::executor_type;
    ankanet::backend::memory_endpoint end;
    executor_type get_executor() const { return end.get_executor(); }
    template <class Handler>
    void async_receive(ankanet::wire::mutable_bytes buffer, Handler&& h) { end.async_receive(buffer, static_cast<Handler&&>(h)); }
    std::error_code send(ankanet::wire::const_bytes frame) { return end.send(frame); }
    std::size_t mtu() const { return end.mtu(); }
    std::optional<ankanet::mac_address> mac() const { return ankanet::mac_address{{0x02, 0, 0, 0, 0, 1}}; }
    ankanet::backend::counters stats() const { return end.stats(); }
    void close() { end.close(); }
};

} // namespace

int main() {
    boost::asio::io_context io;
    auto [lan, interface] = ankanet::backend::make_memory_link(io.get_executor());
    auto net = ankanet::make_bridge_network("uplink", interface_end{std::move(interface)}, ankanet::bridge::mac_mode::translate, {});
    if (!net) return 1;
    auto vm = (*net)->add_port("vm1", ankanet::port_mac::random());
    if (!vm) return 2;
    // A broadcast from the VM: it leaves through the uplink.
    std::array<std::byte, 60> frame{};
    for (std::size_t i = 0; i < 6; ++i) frame[i] = std::byte{0xff};
    const auto mac = *(*net)->mac(*vm);
    for (std::size_t i = 0; i < 6; ++i) frame[6 + i] = std::byte{mac.octets()[i]};
    frame[12] = std::byte{0x88};
    frame[13] = std::byte{0xb5};
    std::size_t to_uplink = 0;
    (*net)->input(*vm, frame, (*net)->clock().now(), [&](ankanet::port_handle to, ankanet::wire::const_bytes) {
        if (to == ankanet::bridge_network::uplink_port()) ++to_uplink;
    });
    (*net)->stop();
    lan.close();
    io.run();
    return to_uplink == 1 ? 0 : 3;
}
