/// @file
/// ankanet::inspection — what a gateway service that inspects VM frames decides about one (see
/// vm_frame_inspector in network.hpp). Its own header so that services name it without the network.
#pragma once

#include <cstdint>

namespace ankanet {

/// What a service that inspects the frames VMs send decides about one, before it is switched.
enum class inspection : std::uint8_t {
    pass,  ///< switch it as usual
    drop,  ///< refuse it (counted in the port's dropped_by_service)
    taken, ///< the service took it for the gateway (and answered through the context): not switched,
           ///< so no other VM sees it (a DHCP client's broadcast, which only the gateway serves)
};

} // namespace ankanet
