// Must NOT compile (run_modes_test.cmake, CHECK=bridge): instantiating the bridge network, which this
// release does not have; its static_assert must say why. Compiled with -DANKANET_MODES_CONTROL the
// program only names the type (as a hypervisor's mode switch may) and must compile.
//
// g++ 12.2 says (run_modes_test.cmake prints the lines it matched):
//   bridge.hpp: In instantiation of 'class ankanet::basic_bridge_network<>':
//   bridge_instantiation.cpp:L:C:   required from here
//   bridge.hpp:L:C: error: static assertion failed: ankanet: bridge mode needs the LAN uplink service
//     (AF_PACKET backend), which this release does not have yet; use shared_network or host_network
//   bridge.hpp:L:C: note: 'ankanet::detail::bridge_uplink_available<ankanet::default_network_traits>'
//     evaluates to false
#include <ankanet/bridge.hpp>

int main() {
#ifdef ANKANET_MODES_CONTROL
    using mode = ankanet::bridge_network; // naming it instantiates nothing
    return sizeof(mode*) == 0 ? 1 : 0;
#else
    ankanet::bridge_network net;
    (void)net;
    return 0;
#endif
}
