// Compile-only-what-you-use (run_modes_test.cmake, CHECK=usage): a program whose only ankanet
// include is the host mode. It is the positive control of the check: its binary must hold the DHCP
// server's and the gateway services' symbols, or the check could not tell that they are missing from
// the disconnected program.
#include <ankanet/host.hpp>

#include <boost/asio/io_context.hpp>

#include <array>
#include <cstddef>

int main() {
    boost::asio::io_context io;
    auto net = ankanet::make_host_network(io.get_executor(), {});
    if (!net) return 1;
    auto vm = (*net)->add_port("vm1", ankanet::port_mac::random());
    if (!vm) return 2;
    // A broadcast frame of an unknown EtherType: it reaches the gateway, where every service is offered it.
    std::array<std::byte, 60> frame{};
    for (std::size_t i = 0; i < 6; ++i) frame[i] = std::byte{0xff};
    const auto mac = *(*net)->mac(*vm);
    for (std::size_t i = 0; i < 6; ++i) frame[6 + i] = std::byte{mac.octets()[i]};
    frame[12] = std::byte{0x88};
    frame[13] = std::byte{0xb5};
    std::size_t emitted = 0;
    (*net)->input(*vm, frame, (*net)->clock().now(), [&](ankanet::port_handle, ankanet::wire::const_bytes) { ++emitted; });
    return (*net)->stats().frames_to_gateway == 1 && emitted == 0 ? 0 : 3;
}
