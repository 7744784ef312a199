// Compile-only-what-you-use (run_modes_test.cmake, CHECK=usage): a program whose only ankanet
// include is the disconnected mode. Its binary must hold no symbol of the DHCP server or of any
// gateway service (the ARP guard, the responder): a disconnected network has no gateway.
#include <ankanet/disconnected.hpp>

#include <array>
#include <cstddef>

int main() {
    ankanet::disconnected_network net;
    auto vm = net.add_port("vm1", ankanet::port_mac::random());
    if (!vm) return 1;
    std::array<std::byte, 60> frame{};
    for (std::size_t i = 0; i < 6; ++i) frame[i] = std::byte{0xff};
    const auto mac = *net.mac(*vm);
    for (std::size_t i = 0; i < 6; ++i) frame[6 + i] = std::byte{mac.octets()[i]};
    frame[12] = std::byte{0x88};
    frame[13] = std::byte{0xb5};
    std::size_t emitted = 0;
    net.input(*vm, frame, net.clock().now(), [&](ankanet::port_handle, ankanet::wire::const_bytes) { ++emitted; });
    const auto counters = net.stats(*vm);
    return counters && counters->dropped_unplugged == 1 && emitted == 0 ? 0 : 2;
}
