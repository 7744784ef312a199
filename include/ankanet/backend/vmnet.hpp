/// @file
/// ankanet::backend::vmnet — a VM's frames through Apple's vmnet.framework (macOS only).
///
/// Theory of operation. open_vmnet() starts a vmnet interface in shared (NAT), host-only or
/// bridged mode and returns a frame_backend for it. Everything but the calls into the framework
/// lives in vmnet_batch.hpp, behind the vmnet_framework policy, and is tested on every platform
/// with a fake framework; this header supplies the one policy that calls Apple:
///
///  * vmnet_start_interface() takes an XPC dictionary (vmnet_operation_mode_key: VMNET_SHARED_MODE,
///    VMNET_HOST_MODE or VMNET_BRIDGED_MODE; for bridged, vmnet_shared_interface_name_key names
///    the host interface; optionally vmnet_interface_id_key, a UUID that keeps the MAC stable
///    across runs) and a serial dispatch queue. Its completion block, on that queue, reports the
///    status and a dictionary with vmnet_mac_address_key (text), vmnet_mtu_key and
///    vmnet_max_packet_size_key (uint64). open_vmnet() waits for it (bounded by a timeout) and
///    maps the values with map_vmnet_parameters().
///  * read/write are vmnet_read/vmnet_write on arrays of struct vmpktdesc; both are non-blocking.
///  * start_events() registers a VMNET_INTERFACE_PACKETS_AVAILABLE callback on the same queue,
///    which calls the backend's thread-safe wake function. stop_events() unregisters it (NULL
///    queue and callback, as documented) and then runs an empty block synchronously on the serial
///    queue, so a callback already under way has finished when it returns.
///  * The policy's destructor stops the interface (vmnet_stop_interface) and waits for that
///    completion, bounded, before releasing the queue.
///
/// Requirements: macOS 10.15 or later (bridged mode and its interface-name key), a compiler with
/// blocks (Apple clang), linking with -framework vmnet, and root or the com.apple.vm.networking
/// entitlement (without them the start fails with vmnet_errc::failure or invalid_access).
///
/// Not exercised by this project's CI, which runs on Linux: this file is written against Apple's
/// documented API and compiled on macOS only. On every other system it is empty.
#pragma once

#if defined(__APPLE__)

#include <ankanet/backend/vmnet_batch.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <dispatch/dispatch.h>
#include <uuid/uuid.h>
#include <vmnet/vmnet.h>
#include <xpc/xpc.h>

#if !defined(__BLOCKS__)
#error "ankanet/backend/vmnet.hpp needs blocks (-fblocks, the default with Apple clang)"
#endif

namespace ankanet::backend {

/// vmnet's operating modes.
enum class vmnet_mode {
    shared,  ///< VMNET_SHARED_MODE: NAT through the host, with macOS's DHCP server
    host,    ///< VMNET_HOST_MODE: the host and other host-mode interfaces only
    bridged, ///< VMNET_BRIDGED_MODE: on the LAN of `bridged_interface`
};

struct vmnet_options {
    vmnet_mode mode = vmnet_mode::shared;
    std::string bridged_interface;                            ///< bridged mode: the host interface, e.g. "en0"
    std::optional<std::array<std::uint8_t, 16>> interface_id; ///< a UUID; the same one gets the same MAC
    vmnet_batch_options batch;
    std::chrono::milliseconds start_timeout{10000};           ///< how long to wait for the start completion
};

/// A vmnet_return_t as an error code; VMNET_SUCCESS is no error.
inline std::error_code vmnet_error(vmnet_return_t status) noexcept {
    switch (status) {
    case VMNET_SUCCESS: return {};
    case VMNET_FAILURE: return vmnet_errc::failure;
    case VMNET_MEM_FAILURE: return vmnet_errc::mem_failure;
    case VMNET_INVALID_ARGUMENT: return vmnet_errc::invalid_argument;
    case VMNET_SETUP_INCOMPLETE: return vmnet_errc::setup_incomplete;
    case VMNET_INVALID_ACCESS: return vmnet_errc::invalid_access;
    case VMNET_PACKET_TOO_BIG: return vmnet_errc::packet_too_big;
    case VMNET_BUFFER_EXHAUSTED: return vmnet_errc::buffer_exhausted;
    case VMNET_TOO_MANY_PACKETS: return vmnet_errc::too_many_packets;
    default: return vmnet_errc::unknown; // statuses added by later SDKs
    }
}

namespace detail {

// Dispatch and XPC objects are reference-counted by hand in C++; under Objective-C ARC the
// compiler does it and the release functions are unavailable.
#if defined(__OBJC__) && __has_feature(objc_arc)
inline void vmnet_release(dispatch_object_t) noexcept {}
inline void vmnet_release_xpc(xpc_object_t) noexcept {}
#else
inline void vmnet_release(dispatch_object_t object) noexcept { dispatch_release(object); }
inline void vmnet_release_xpc(xpc_object_t object) noexcept { xpc_release(object); }
#endif

inline dispatch_time_t vmnet_deadline(std::chrono::milliseconds timeout) noexcept {
    return dispatch_time(DISPATCH_TIME_NOW, static_cast<std::int64_t>(timeout.count()) * static_cast<std::int64_t>(NSEC_PER_MSEC));
}

/// What the start completion reports; shared with the block, which may outlive a timed-out wait.
struct vmnet_start_result {
    vmnet_return_t status = VMNET_FAILURE;
    std::string mac;
    std::uint64_t mtu = 0;
    std::uint64_t max_packet_size = 0;
};

} // namespace detail

/// The vmnet_framework policy over a started interface. Owns the interface and its queue.
class apple_vmnet_framework {
public:
    using descriptor_type = vmpktdesc;

    /// Takes ownership of a started interface and the serial queue it was started on.
    apple_vmnet_framework(interface_ref interface, dispatch_queue_t queue) noexcept : interface_(interface), queue_(queue) {}

    apple_vmnet_framework(apple_vmnet_framework&& other) noexcept
        : interface_(std::exchange(other.interface_, nullptr)), queue_(std::exchange(other.queue_, nullptr)),
          stop_timeout_(other.stop_timeout_) {}
    apple_vmnet_framework& operator=(apple_vmnet_framework&& other) noexcept {
        if (this != &other) {
            stop();
            interface_ = std::exchange(other.interface_, nullptr);
            queue_ = std::exchange(other.queue_, nullptr);
            stop_timeout_ = other.stop_timeout_;
        }
        return *this;
    }
    apple_vmnet_framework(const apple_vmnet_framework&) = delete;
    apple_vmnet_framework& operator=(const apple_vmnet_framework&) = delete;
    ~apple_vmnet_framework() { stop(); }

    std::error_code read(vmpktdesc* packets, int& count) noexcept {
        return vmnet_error(vmnet_read(interface_, packets, &count));
    }
    std::error_code write(vmpktdesc* packets, int& count) noexcept {
        return vmnet_error(vmnet_write(interface_, packets, &count));
    }

    std::error_code start_events(std::function<void()> wake) {
        // The block keeps its own copy of `wake` (blocks copy captured C++ objects).
        const vmnet_return_t status = vmnet_interface_set_event_callback(
            interface_, VMNET_INTERFACE_PACKETS_AVAILABLE, queue_, ^(interface_event_t events, xpc_object_t) {
                if ((events & VMNET_INTERFACE_PACKETS_AVAILABLE) != 0) wake();
            });
        return vmnet_error(status);
    }

    void stop_events() noexcept {
        if (interface_ == nullptr) return;
        (void)vmnet_interface_set_event_callback(interface_, VMNET_INTERFACE_PACKETS_AVAILABLE, nullptr, nullptr);
        // The queue is serial: once this empty block has run, no callback is running either.
        // (Never called from the queue itself: the backend lives on its Asio executor.)
        dispatch_sync(queue_, ^{
                      });
    }

    interface_ref native_handle() const noexcept { return interface_; }

private:
    void stop() noexcept {
        if (interface_ == nullptr) return;
        stop_events();
        dispatch_semaphore_t stopped = dispatch_semaphore_create(0);
        const vmnet_return_t status =
            vmnet_stop_interface(interface_, queue_, ^(vmnet_return_t) { dispatch_semaphore_signal(stopped); });
        bool done = status != VMNET_SUCCESS; // no completion will come
        if (!done) done = dispatch_semaphore_wait(stopped, detail::vmnet_deadline(stop_timeout_)) == 0;
        if (done) {
            detail::vmnet_release(stopped);
            detail::vmnet_release(queue_);
        }
        // Otherwise the completion may still run and use both: leaking them is the safe choice.
        interface_ = nullptr;
        queue_ = nullptr;
    }

    interface_ref interface_ = nullptr;
    dispatch_queue_t queue_ = nullptr;
    std::chrono::milliseconds stop_timeout_{10000};
};

using vmnet_backend = basic_vmnet_backend<apple_vmnet_framework>;
static_assert(vmnet_framework<apple_vmnet_framework>);
static_assert(frame_backend<vmnet_backend>);

/// Starts a vmnet interface and returns the backend for it.
///
/// Errors: std::errc::invalid_argument (bridged mode without an interface name), the start
/// status as vmnet_errc, std::errc::timed_out when the start completion does not come within
/// options.start_timeout, or map_vmnet_parameters()'s errors for parameters out of range.
inline result<vmnet_backend> open_vmnet(boost::asio::any_io_executor executor, const vmnet_options& options = {}) {
    if (options.mode == vmnet_mode::bridged && options.bridged_interface.empty()) {
        return std::make_error_code(std::errc::invalid_argument);
    }
    xpc_object_t description = xpc_dictionary_create(nullptr, nullptr, 0);
    const std::uint64_t mode = options.mode == vmnet_mode::shared ? VMNET_SHARED_MODE
                               : options.mode == vmnet_mode::host ? VMNET_HOST_MODE
                                                                  : VMNET_BRIDGED_MODE;
    xpc_dictionary_set_uint64(description, vmnet_operation_mode_key, mode);
    if (options.mode == vmnet_mode::bridged) {
        xpc_dictionary_set_string(description, vmnet_shared_interface_name_key, options.bridged_interface.c_str());
    }
    if (options.interface_id) {
        uuid_t id;
        std::memcpy(id, options.interface_id->data(), sizeof id);
        xpc_dictionary_set_uuid(description, vmnet_interface_id_key, id);
    }

    dispatch_queue_t queue = dispatch_queue_create("org.ankanet.vmnet", DISPATCH_QUEUE_SERIAL);
    dispatch_semaphore_t started = dispatch_semaphore_create(0);
    auto outcome = std::make_shared<detail::vmnet_start_result>();
    interface_ref interface =
        vmnet_start_interface(description, queue, ^(vmnet_return_t status, xpc_object_t parameters) {
            outcome->status = status;
            if (status == VMNET_SUCCESS && parameters != nullptr) {
                if (const char* mac = xpc_dictionary_get_string(parameters, vmnet_mac_address_key)) outcome->mac = mac;
                outcome->mtu = xpc_dictionary_get_uint64(parameters, vmnet_mtu_key);
                outcome->max_packet_size = xpc_dictionary_get_uint64(parameters, vmnet_max_packet_size_key);
            }
            dispatch_semaphore_signal(started);
        });
    detail::vmnet_release_xpc(description);
    if (interface == nullptr) {
        detail::vmnet_release(started);
        detail::vmnet_release(queue);
        return make_error_code(vmnet_errc::failure);
    }
    if (dispatch_semaphore_wait(started, detail::vmnet_deadline(options.start_timeout)) != 0) {
        // The completion may still come and signal `started`: leave it and the queue to it, and
        // ask vmnet to stop whatever it starts.
        (void)vmnet_stop_interface(interface, queue, ^(vmnet_return_t) {
                                   });
        return std::make_error_code(std::errc::timed_out);
    }
    detail::vmnet_release(started);
    if (outcome->status != VMNET_SUCCESS) {
        detail::vmnet_release(queue);
        return vmnet_error(outcome->status);
    }

    apple_vmnet_framework framework{interface, queue}; // stops the interface if anything below fails
    const auto parameters = map_vmnet_parameters(outcome->mac, outcome->mtu, outcome->max_packet_size);
    if (!parameters) return parameters.error();
    return vmnet_backend::create(std::move(executor), std::move(framework), *parameters, options.batch);
}

} // namespace ankanet::backend

#else // !__APPLE__

// vmnet.framework exists only on macOS; on this system the vmnet backend is not available.
// The portable part (batching, parameter mapping) is in ankanet/backend/vmnet_batch.hpp.

#endif
