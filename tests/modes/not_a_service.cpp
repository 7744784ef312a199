// Must NOT compile (run_modes_test.cmake, CHECK=concept): a network whose service pack holds a type
// with neither handle() nor inspect(). The diagnostics must name the `gateway_service` concept.
// Compiled with -DANKANET_MODES_CONTROL the pack holds a real (if useless) service instead, and the
// program must compile: the failure above is then due to the service and nothing else.
//
// g++ 12.2 says (run_modes_test.cmake prints the lines it matched):
//   network.hpp: In instantiation of 'struct ankanet::detail::checked_service<not_a_service>':
//   network.hpp:L:C:   required from 'class ankanet::basic_network<ankanet::default_network_traits, not_a_service>'
//   not_a_service.cpp:L:C:   required from here
//   network.hpp:L:C: error: static assertion failed: ankanet::basic_network: each Service must model
//     ankanet::gateway_service: a movable type with bool handle(const wire::parsed_frame&, Context&)
//     and/or bool inspect(const wire::parsed_frame&, Context&)
//   network.hpp:L:C: note: no operand of the disjunction is satisfied
#include <ankanet/network.hpp>

/// Neither a gateway_frame_handler nor a vm_frame_inspector.
struct not_a_service {
    int value = 0;
};

/// Handles nothing, but is a service.
struct a_service {
    template <class Context>
    bool handle(const ankanet::wire::parsed_frame&, Context&) {
        return false;
    }
};

#ifdef ANKANET_MODES_CONTROL
using service_type = a_service;
#else
using service_type = not_a_service;
#endif

int main() {
    ankanet::basic_network<ankanet::default_network_traits, service_type> net{ankanet::network_config{}, service_type{}};
    return static_cast<int>(net.port_count());
}
