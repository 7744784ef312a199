// Must NOT compile (run_modes_test.cmake, CHECK=concept): a network whose service pack holds a type
// with neither handle() nor inspect(). The diagnostics must name the `gateway_service` concept.
// Compiled with -DANKANET_MODES_CONTROL the pack holds a real (if useless) service instead, and the
// program must compile: the failure above is then due to the service and nothing else.
//
// g++ 12.2 says (run_modes_test.cmake prints the lines it matched; -fconcepts-diagnostics-depth=3
// adds nothing: g++ reports the constrained pack as one fold expression, not which service failed):
//   not_a_service.cpp:L:C: error: template constraint failure for 'template<class Traits, class ... Services>
//     requires (network_traits<Traits>) && ((... && gateway_service<Services>)) class ankanet::basic_network'
//   not_a_service.cpp:L:C: note: constraints not satisfied
//   network.hpp:L:C: note: the expression '(... && gateway_service<Services>) [with Services = {not_a_service}]'
//     evaluated to 'false'
//   not_a_service.cpp:L:C: error: scalar object 'net' requires one element in initializer
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
