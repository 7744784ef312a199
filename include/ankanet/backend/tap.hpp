/// @file
/// ankanet::backend::tap — a VM's frames through a Linux TAP device.
///
/// Theory of operation. A TAP is a virtual Ethernet interface whose "wire" is a file descriptor:
/// each write() injects one frame as if it arrived on the interface, each read() returns one frame
/// the kernel transmitted on it. `tap_device` is that fd, made non-blocking and driven by an
/// Asio posix::stream_descriptor; it meets the frame_backend contract (backend.hpp).
///
/// Three ways to get one:
///  * open(): /dev/net/tun + TUNSETIFF(IFF_TAP | IFF_NO_PI) in the calling thread's namespace. An
///    empty name lets the kernel pick (tap0, tap1, ...); name() reports the name it got. A name
///    that exists and is a TAP the caller may use (a persistent one, `ip tuntap add mode tap`) is
///    attached to, as QEMU does.
///  * adopt(): a TAP fd a hypervisor or a management tool already opened. It is checked with
///    TUNGETIFF and refused if it is a TUN (IP packets without an Ethernet header), or if its
///    IFF_VNET_HDR (a virtio-net header before every frame) differs from what tap_options asks
///    (see "Offloads" below). A TAP opened without IFF_NO_PI
///    (a 4-byte packet-information header before every frame) is refused when the kernel lets us
///    see it, which is seldom: TUNGETIFF reports IFF_NOFILTER ("no socket filter attached") in the
///    same bit as IFF_NO_PI (0x1000), so without a filter the bit is set either way. The caller
///    answers for IFF_NO_PI then; QEMU, libvirt and `ip tuntap` all set it.
///  * open_in_netns(): the TAP is created inside another network namespace (netns.hpp), so the
///    namespace's own kernel stack is the "guest" behind it, as with pasta. The fd keeps working
///    from the caller's namespace. tap_options can set the interface's MAC (in that setup, the
///    guest's MAC), its MTU, and bring it up, through a socket created in the namespace.
///
/// The data path:
///  * Receive: each read() returns exactly one frame. The read asks for at most max_frame_len(mtu)
///    bytes into the caller's buffer plus one byte of overflow: the kernel truncates a longer frame
///    to what fits and says nothing, so a frame that reaches the overflow byte is known to be too
///    long. Runts and oversize frames (a guest whose interface MTU is above ours) are counted
///    (rx_runt, rx_oversize) and the read is issued again; the caller's receive completes only with
///    a good frame or an error. A good frame longer than a caller's short buffer is dropped with
///    errc::buffer_too_small, as the memory backend does. The buffer's bytes past the returned
///    size are unspecified. try_receive() is the same read done synchronously (burst_backend,
///    backend.hpp): non-blocking readv calls, skipping bad sizes as above, until a good frame, an
///    error, or EAGAIN ("nothing queued"). A caller draining a burst with it after each completion
///    pays one event-loop round trip per burst instead of one per frame; the system call per frame
///    remains (a TAP gives one frame per read).
///  * Send: one write() per frame on the non-blocking fd. The kernel takes the whole frame or
///    fails; there are no partial writes. EAGAIN, or any other error (EIO while the interface is
///    down, say), is a counted drop (tx_dropped) and is returned; nothing is queued here.
///  * End of the link: when the interface is deleted (`ip link del`) the kernel detaches the fd and
///    reports EBADFD; a pending receive then completes with errc::peer_closed and send returns it.
///    Deleting the namespace's name (`ip netns del`) is not an end: the fd holds a reference to
///    the namespace it was opened in, which lives on, with the interface, until the fd is closed.
///  * close() aborts a pending receive with std::errc::operation_canceled. A destroyed device
///    closes itself; its pending receive still completes (canceled), because the operation holds
///    the device's state alive, as an Asio socket's pending operation does.
/// mac() is nullopt: a TAP imposes no MAC on the frames it carries.
///
/// Offloads (opt-in, tap_options::vnet_header). With IFF_VNET_HDR every frame on the fd is preceded
/// by a virtio-net header (wire/offload.hpp). Receive reads it into the device's state with the same
/// readv, hands over only the frame, and keeps the parsed header for last_offload(); a header that
/// does not parse drops the frame (vnet_header_errors()). send(frame) writes an all-zero header,
/// send(frame, offload) the given one. TUNSETOFFLOAD then tells the kernel what we accept from it:
/// unfinished checksums (TUN_F_CSUM) and TCPv4 super-frames (TUN_F_TSO4), which may be up to
/// wire::offload::max_frame_len bytes long: a GSO frame is exempt from the MTU on both paths, and a
/// receive buffer should hold max_receive_len(). Frames we write may carry GSO whatever we accept;
/// the kernel segments them. Without the option nothing changes: no header, the same system calls.
///
/// Limits: one queue (IFF_MULTI_QUEUE devices are accepted by adopt(), but only the adopted queue is
/// read); no TSO6/UFO offloads. Linux only.
#pragma once

#if defined(__linux__)

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/netns.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/error.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/offload.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace ankanet::backend {

/// Why adopt() refused a descriptor that is a tun/tap fd, but not one this backend can drive.
enum class tap_errc {
    not_a_tap = 1,      ///< a TUN device: IP packets without an Ethernet header
    vnet_header,        ///< IFF_VNET_HDR is set: every frame starts with a virtio-net header
    packet_information, ///< IFF_NO_PI is not set: every frame starts with a 4-byte tun_pi header
    no_vnet_header,     ///< tap_options::vnet_header asks for IFF_VNET_HDR, which the fd lacks
};

namespace detail {

class tap_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.tap"; }
    std::string message(int code) const override {
        switch (static_cast<tap_errc>(code)) {
        case tap_errc::not_a_tap: return "the descriptor is a TUN device (IP packets), not a TAP (Ethernet frames)";
        case tap_errc::vnet_header: return "the TAP has IFF_VNET_HDR set, but tap_options::vnet_header is off";
        case tap_errc::no_vnet_header: return "tap_options::vnet_header asks for IFF_VNET_HDR, which the TAP lacks";
        case tap_errc::packet_information: return "the TAP lacks IFF_NO_PI; packet-information headers are not supported";
        }
        return "unknown tap error";
    }
};

} // namespace detail

/// The tap error category.
inline const std::error_category& tap_error_category() noexcept {
    static const detail::tap_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(tap_errc e) noexcept { return {static_cast<int>(e), tap_error_category()}; }

} // namespace ankanet::backend

template <>
struct std::is_error_code_enum<ankanet::backend::tap_errc> : std::true_type {};

namespace ankanet::backend {

/// How open() and open_in_netns() create and set up the interface.
struct tap_options {
    /// The largest IP packet a frame may carry; frames up to max_frame_len(mtu) pass.
    std::size_t mtu = default_mtu;
    /// Also set the interface's MTU to `mtu` (SIOCSIFMTU), so the kernel side sends no frame
    /// this backend would drop as oversize.
    bool set_interface_mtu = false;
    /// Set the interface's MAC (SIOCSIFHWADDR). When a namespace is the guest, this is the
    /// guest's MAC. Must be unicast (the kernel refuses others with EADDRNOTAVAIL).
    std::optional<wire::mac_address> mac;
    /// Bring the interface up (SIOCSIFFLAGS with IFF_UP), after the MAC and MTU are set.
    bool bring_up = false;
    /// Open with IFF_VNET_HDR: every frame carries a virtio-net header (see "Offloads" at the top
    /// of this file). It changes what a frame is on both paths, so it is chosen at open time.
    bool vnet_header = false;
    /// The header's length: wire::offload::header_len (10) or header_len_v1 (12).
    std::size_t vnet_header_len = wire::offload::header_len;
    /// With vnet_header: the kernel may hand us frames whose checksum is unfinished (TUN_F_CSUM).
    bool checksum_offload = false;
    /// With vnet_header: ... and TCPv4 super-frames of up to 64 KiB (TUN_F_TSO4, with TUN_F_CSUM).
    bool tso4 = false;
};

namespace detail::tap_impl {

inline std::error_code last_system_error() noexcept { return {errno, std::system_category()}; }

/// Closes a descriptor on scope exit unless released.
class unique_fd {
public:
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

inline bool valid_mtu(std::size_t mtu) noexcept { return mtu >= min_mtu && mtu <= max_mtu; }

/// The offload settings hold together: a known header length, offloads only with the header.
inline bool valid_offload_options(const tap_options& options) noexcept {
    if (!options.vnet_header) return !options.checksum_offload && !options.tso4;
    return options.vnet_header_len == wire::offload::header_len || options.vnet_header_len == wire::offload::header_len_v1;
}

/// Sets the virtio-net header's length and byte order and the offloads the kernel may use on `fd`.
inline std::error_code configure_vnet(int fd, const tap_options& options) noexcept {
    int length = static_cast<int>(options.vnet_header_len);
    if (::ioctl(fd, TUNSETVNETHDRSZ, &length) != 0) return last_system_error();
    int little_endian = 1; // virtio 1.x order, which wire::offload reads; a no-op on little-endian hosts
    if (::ioctl(fd, TUNSETVNETLE, &little_endian) != 0) return last_system_error();
    unsigned long offloads = 0;
    if (options.checksum_offload || options.tso4) offloads |= TUN_F_CSUM;
    if (options.tso4) offloads |= TUN_F_TSO4;
    if (::ioctl(fd, TUNSETOFFLOAD, offloads) != 0) return last_system_error(); // a value, not a pointer
    return {};
}

/// An ifreq naming `name`; the caller has checked that it fits (shorter than IFNAMSIZ).
inline ::ifreq interface_request(std::string_view name) noexcept {
    ::ifreq request{};
    if (!name.empty()) std::memcpy(request.ifr_name, name.data(), name.size());
    return request;
}

inline std::error_code interface_ioctl(int fd, unsigned long command, ::ifreq& request) noexcept {
    return ::ioctl(fd, command, &request) == 0 ? std::error_code{} : last_system_error();
}

/// Applies the MAC, MTU and up settings of `options` to interface `name` of the calling thread's
/// namespace, through a socket made here so that it is that namespace's interface.
inline std::error_code configure_interface(const std::string& name, const tap_options& options) {
    if (!options.mac && !options.set_interface_mtu && !options.bring_up) return {};
    unique_fd socket{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (socket.get() < 0) return last_system_error();
    if (options.mac) {
        auto request = interface_request(name);
        request.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        std::memcpy(request.ifr_hwaddr.sa_data, options.mac->octets().data(), wire::mac_address::size);
        if (auto ec = interface_ioctl(socket.get(), SIOCSIFHWADDR, request)) return ec;
    }
    if (options.set_interface_mtu) {
        auto request = interface_request(name);
        request.ifr_mtu = static_cast<int>(options.mtu); // valid_mtu() bounds it well below INT_MAX
        if (auto ec = interface_ioctl(socket.get(), SIOCSIFMTU, request)) return ec;
    }
    if (options.bring_up) {
        auto request = interface_request(name);
        if (auto ec = interface_ioctl(socket.get(), SIOCGIFFLAGS, request)) return ec;
        request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
        if (auto ec = interface_ioctl(socket.get(), SIOCSIFFLAGS, request)) return ec;
    }
    return {};
}

/// What a TAP's receive completes with, from what the descriptor's read reported.
inline std::error_code tap_read_error(const boost::system::error_code& ec) noexcept {
    if (ec == boost::asio::error::operation_aborted) return std::make_error_code(std::errc::operation_canceled);
    // EBADFD: the interface was deleted and the kernel detached the fd from it.
    if (ec == boost::asio::error::eof || (ec.category() == boost::system::system_category() && ec.value() == EBADFD)) {
        return make_error_code(errc::peer_closed);
    }
    return std::error_code(ec);
}

/// What a TAP's pending receive and the device share; kept alive by both.
struct tap_state {
    tap_state(boost::asio::any_io_executor executor, std::size_t mtu_, std::string name_)
        : descriptor(std::move(executor)), mtu(mtu_), name(std::move(name_)) {}

    boost::asio::posix::stream_descriptor descriptor;
    std::size_t mtu;
    std::string name;
    counters stats;
    /// Catches the first byte past the longest frame a receive accepts (see the top of the file).
    std::array<std::byte, 1> overflow{};
    bool receiving = false; ///< an async_receive is pending

    // Offloads (see the top of the file); vnet_len == 0 without IFF_VNET_HDR.
    std::size_t vnet_len = 0;
    bool gso_rx = false; ///< TUN_F_TSO4 is on: the kernel may send super-frames
    std::array<std::byte, wire::offload::header_len_v1> vnet_rx{};
    wire::offload last_offload;
    std::uint64_t vnet_header_errors = 0;

    /// The most bytes of frame one read takes (the header not counted).
    std::size_t read_limit() const noexcept { return gso_rx ? wire::offload::max_frame_len : max_frame_len(mtu); }

    /// Checks one read of `got` bytes (header included), counting what it refuses; on success
    /// `size` is the frame's length and last_offload its header.
    std::error_code check_read(std::size_t got, std::size_t& size) noexcept {
        if (vnet_len == 0) {
            size = got;
            if (auto why = check_frame_size(got, mtu)) {
                count_bad_rx(stats, why);
                return why;
            }
            return {};
        }
        if (got < vnet_len) {
            ++stats.rx_runt;
            return errc::truncated;
        }
        // tun writes only the 10-byte header and skips num_buffers: parse what it wrote.
        auto meta = wire::offload::parse(wire::const_bytes{vnet_rx}.first(wire::offload::header_len));
        if (!meta) {
            ++vnet_header_errors;
            return meta.error();
        }
        size = got - vnet_len;
        if (size < wire::ethernet::header_len) {
            ++stats.rx_runt;
            return errc::truncated;
        }
        if (size > (meta->is_gso() ? wire::offload::max_frame_len : max_frame_len(mtu))) {
            ++stats.rx_oversize;
            return errc::bad_length;
        }
        last_offload = *meta;
        return {};
    }
};

/// How many bad-sized frames one try_receive skips before it says "nothing queued" and lets the
/// caller wait: a guest flooding runts or oversize frames cannot hold the event loop.
inline constexpr int tap_try_receive_skips = 64;

/// One async_receive: reads until a frame of a valid size arrives or the read fails.
struct tap_receive_op {
    std::shared_ptr<tap_state> state;
    wire::mutable_bytes buffer;

    template <class Self>
    void operator()(Self& self) {
        state->receiving = true;
        read(self);
    }

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec, std::size_t size) {
        if (ec) {
            complete(self, tap_read_error(ec), 0);
            return;
        }
        auto& s = *state;
        const std::size_t got = size;
        if (s.check_read(got, size)) {
            read(self); // skipped (and counted), not delivered: wait for the next frame
            return;
        }
        if (size > buffer.size()) {
            complete(self, make_error_code(errc::buffer_too_small), 0);
            return;
        }
        ++s.stats.rx_frames;
        s.stats.rx_bytes += size;
        complete(self, std::error_code{}, size);
    }

    template <class Self>
    void complete(Self& self, std::error_code ec, std::size_t size) {
        state->receiving = false; // before the handler runs: it may call try_receive
        self.complete(ec, size);
    }

    template <class Self>
    void read(Self& self) {
        auto& s = *state;
        if (!s.descriptor.is_open()) {
            // Closed before this receive began, or while it skipped a bad frame: complete as
            // canceled, through the executor (never inline from async_receive).
            boost::asio::post(s.descriptor.get_executor(),
                              boost::asio::append(std::move(self), boost::system::error_code{boost::asio::error::operation_aborted},
                                                  std::size_t{0}));
            return;
        }
        const std::size_t head = std::min(buffer.size(), s.read_limit());
        if (s.vnet_len != 0) {
            const std::array<boost::asio::mutable_buffer, 3> buffers{boost::asio::buffer(s.vnet_rx.data(), s.vnet_len),
                                                                     boost::asio::buffer(buffer.data(), head),
                                                                     boost::asio::buffer(s.overflow)};
            s.descriptor.async_read_some(buffers, std::move(self));
            return;
        }
        const std::array<boost::asio::mutable_buffer, 2> buffers{boost::asio::buffer(buffer.data(), head),
                                                                 boost::asio::buffer(s.overflow)};
        s.descriptor.async_read_some(buffers, std::move(self));
    }
};

} // namespace detail::tap_impl

/// A frame backend over a Linux TAP device. See the top of this file.
///
/// Movable, not copyable; a moved-from device may only be destroyed or assigned to. Use it from
/// its executor's thread.
///
/// @par Example
/// @code
/// tap_options options;
/// options.mac = guest_mac;
/// options.set_interface_mtu = options.bring_up = true;
/// auto tap = tap_device::open_in_netns(io.get_executor(), "/run/netns/vm1", "eth0", options);
/// if (!tap) return tap.error();
/// tap->async_receive(buffer, [&](std::error_code ec, std::size_t n) { ... });
/// @endcode
class tap_device {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on

    /// Creates (or attaches to) TAP interface `name` in the calling thread's network namespace.
    /// @param name the interface name, shorter than IFNAMSIZ (16); empty lets the kernel choose.
    /// @return the device, or: std::errc::invalid_argument (name too long or holding a NUL, MTU
    /// outside [min_mtu, max_mtu], offloads without vnet_header or a header length other than 10
    /// or 12); the errno of open(/dev/net/tun), of TUNSETIFF (EPERM without CAP_NET_ADMIN or for
    /// another user's persistent TAP, EINVAL when the name belongs to a device that is not a TAP),
    /// of the virtio-net header's ioctls, or of setting up the interface (EADDRNOTAVAIL for a multicast
    /// MAC, EINVAL for an MTU the device refuses). On error no interface is left behind, unless
    /// it existed before.
    [[nodiscard]] static result<tap_device> open(executor_type executor, std::string_view name,
                                                 const tap_options& options = {}) {
        if (!detail::tap_impl::valid_mtu(options.mtu) || !detail::tap_impl::valid_offload_options(options) ||
            name.size() >= IFNAMSIZ || name.find('\0') != std::string_view::npos) {
            return std::make_error_code(std::errc::invalid_argument);
        }
        detail::tap_impl::unique_fd fd{::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)};
        if (fd.get() < 0) return detail::tap_impl::last_system_error();
        auto request = detail::tap_impl::interface_request(name);
        request.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (options.vnet_header ? IFF_VNET_HDR : 0));
        if (auto ec = detail::tap_impl::interface_ioctl(fd.get(), TUNSETIFF, request)) return ec;
        std::string chosen{request.ifr_name, ::strnlen(request.ifr_name, IFNAMSIZ)};
        // Closing the fd on an error below removes the interface again (it is not persistent).
        if (options.vnet_header) {
            if (auto ec = detail::tap_impl::configure_vnet(fd.get(), options)) return ec;
        }
        if (auto ec = detail::tap_impl::configure_interface(chosen, options)) return ec;
        auto device = make(std::move(executor), fd.get(), options, std::move(chosen));
        if (device) fd.release();
        return device;
    }
    /// Opens the TAP interface `name` (created if missing) with `mtu`; as open(executor, name, options).
    [[nodiscard]] static result<tap_device> open(executor_type executor, std::string_view name, std::size_t mtu) {
        tap_options options;
        options.mtu = mtu;
        return open(std::move(executor), name, options);
    }

    /// Takes over a TAP descriptor opened elsewhere (e.g. passed by a hypervisor).
    ///
    /// On success the device owns `fd` and sets O_NONBLOCK on it — on the open file description,
    /// so a process sharing it sees the flag too. On error `fd` is untouched and still the caller's.
    /// @return the device, or: std::errc::invalid_argument (bad MTU); ENOTTY (not a tun/tap fd);
    /// EBADFD (a tun fd attached to no interface); tap_errc::not_a_tap, tap_errc::vnet_header,
    /// tap_errc::packet_information (a tun/tap fd of a kind this backend cannot drive; the last only
    /// when the kernel shows it, see the top of the file). An fd with IFF_VNET_HDR needs the
    /// overload taking tap_options.
    [[nodiscard]] static result<tap_device> adopt(executor_type executor, int fd, std::size_t mtu = default_mtu) {
        tap_options options;
        options.mtu = mtu;
        return adopt(std::move(executor), fd, options);
    }
    /// As above, with the MTU and the offload settings of `options` (the others are ignored): an fd
    /// with IFF_VNET_HDR is accepted exactly when options.vnet_header is set (else
    /// tap_errc::vnet_header or tap_errc::no_vnet_header), and its header length and offloads are
    /// then set as open() sets them — on the device, which the fd's other holders share.
    [[nodiscard]] static result<tap_device> adopt(executor_type executor, int fd, const tap_options& options) {
        if (!detail::tap_impl::valid_mtu(options.mtu) || !detail::tap_impl::valid_offload_options(options)) {
            return std::make_error_code(std::errc::invalid_argument);
        }
        ::ifreq request{};
        if (auto ec = detail::tap_impl::interface_ioctl(fd, TUNGETIFF, request)) return ec;
        const unsigned flags = static_cast<unsigned short>(request.ifr_flags);
        if ((flags & IFF_TAP) == 0) return make_error_code(tap_errc::not_a_tap);
        if ((flags & IFF_VNET_HDR) != 0 && !options.vnet_header) return make_error_code(tap_errc::vnet_header);
        if ((flags & IFF_VNET_HDR) == 0 && options.vnet_header) return make_error_code(tap_errc::no_vnet_header);
        // Clear only when IFF_NO_PI is unset *and* a filter is attached: the bit doubles as
        // IFF_NOFILTER (see the top of the file), so a set bit proves nothing.
        if ((flags & IFF_NO_PI) == 0) return make_error_code(tap_errc::packet_information);
        if (options.vnet_header) {
            if (auto ec = detail::tap_impl::configure_vnet(fd, options)) return ec;
        }
        return make(std::move(executor), fd, options, std::string{request.ifr_name, ::strnlen(request.ifr_name, IFNAMSIZ)});
    }

    /// Creates TAP interface `name` inside the network namespace at `netns_path` (/run/netns/NAME,
    /// /proc/PID/ns/net) and comes back; the device is then used from the caller's namespace.
    ///
    /// The calling thread enters the namespace for the duration of the call only (netns.hpp); the
    /// executor's thread is not involved. Needs CAP_SYS_ADMIN (setns) and CAP_NET_ADMIN there.
    /// @return as open(), or the error of entering the namespace (ENOENT, EINVAL, EPERM).
    [[nodiscard]] static result<tap_device> open_in_netns(executor_type executor, const std::filesystem::path& netns_path,
                                                          std::string_view name, const tap_options& options = {}) {
        return run_in_netns(netns_path, [&]() -> result<tap_device> { return open(std::move(executor), name, options); });
    }
    /// As open(), inside the network namespace at `netns_path`.
    [[nodiscard]] static result<tap_device> open_in_netns(executor_type executor, const std::filesystem::path& netns_path,
                                                          std::string_view name, std::size_t mtu) {
        tap_options options;
        options.mtu = mtu;
        return open_in_netns(std::move(executor), netns_path, name, options);
    }

    /// Move-constructs (memberwise).
    tap_device(tap_device&&) noexcept = default;
    /// Move assignment.
    tap_device& operator=(tap_device&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    tap_device(const tap_device&) = delete;
    tap_device& operator=(const tap_device&) = delete;
    ~tap_device() { close(); }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->descriptor.get_executor(); }
    /// The MTU.
    std::size_t mtu() const noexcept { return state_->mtu; }
    /// The MAC.
    std::optional<wire::mac_address> mac() const noexcept { return std::nullopt; }
    /// What it counted so far.
    counters stats() const noexcept { return state_->stats; }
    /// The interface's name, as the kernel reported it (the one it chose, for an empty name).
    const std::string& name() const noexcept { return state_->name; }
    /// Whether it is open.
    bool is_open() const noexcept { return state_ && state_->descriptor.is_open(); }

    /// The device was opened with a virtio-net header (tap_options::vnet_header): send(frame,
    /// offload) passes the metadata to the kernel (offload_backend, backend/offload.hpp).
    bool accepts_offload() const noexcept { return state_->vnet_len != 0; }
    /// The virtio-net header of the last frame received (all clear without vnet_header); read it
    /// when a receive delivers a frame. A frame with needs_csum has an unfinished checksum; one with GSO is a
    /// super-frame (wire::complete_checksum and wire::segment finish them in software).
    const wire::offload& last_offload() const noexcept { return state_->last_offload; }
    /// The buffer size a receive needs for every frame: max_frame_len(mtu()), or
    /// wire::offload::max_frame_len when the kernel may send super-frames (tap_options::tso4).
    std::size_t max_receive_len() const noexcept { return state_->read_limit(); }
    /// Frames dropped on receive because their virtio-net header did not parse.
    std::uint64_t vnet_header_errors() const noexcept { return state_->vnet_header_errors; }

    /// Receives one frame into `buffer`, which should hold max_frame_len(mtu()) bytes.
    ///
    /// Completes with (error_code, size): a frame of a valid size; errc::buffer_too_small (a valid
    /// frame longer than `buffer`, dropped); std::errc::operation_canceled after close();
    /// errc::peer_closed once the interface is gone. Never completes inline. One at a time;
    /// `buffer` must stay valid until completion.
    /// @param token a completion handler `void(std::error_code, std::size_t)`, or another Asio
    /// completion token (use_awaitable, deferred, ...).
    template <class CompletionToken>
    auto async_receive(wire::mutable_bytes buffer, CompletionToken&& token) {
        return boost::asio::async_compose<CompletionToken, void(std::error_code, std::size_t)>(
            detail::tap_impl::tap_receive_op{state_, buffer}, token, state_->descriptor);
    }

    /// Receives one frame now, without waiting and without a completion (burst_backend,
    /// backend.hpp): non-blocking reads until one is a frame of a valid size, skipping and counting
    /// bad sizes as async_receive does (at most tap_try_receive_skips of them per call).
    /// @return the frame's size; or std::errc::resource_unavailable_try_again (nothing queued now:
    /// use async_receive); std::errc::operation_in_progress (an async_receive is pending); or what
    /// async_receive would complete with: errc::buffer_too_small (a valid frame longer than
    /// `buffer`, dropped), std::errc::operation_canceled after close(), errc::peer_closed once the
    /// interface is gone, the read's errno.
    result<std::size_t> try_receive(wire::mutable_bytes buffer) {
        if (!is_open()) return std::make_error_code(std::errc::operation_canceled);
        auto& s = *state_;
        if (s.receiving) return std::make_error_code(std::errc::operation_in_progress);
        const std::size_t head = std::min(buffer.size(), s.read_limit());
        // With a virtio-net header it is read first, into the state (see the top of the file).
        std::array<::iovec, 3> pieces{::iovec{s.vnet_rx.data(), s.vnet_len}, ::iovec{buffer.data(), head},
                                      ::iovec{s.overflow.data(), s.overflow.size()}};
        const std::size_t skip = s.vnet_len == 0 ? 1 : 0;
        for (int attempt = 0; attempt < detail::tap_impl::tap_try_receive_skips; ++attempt) {
            ::ssize_t got = 0;
            do {
                got = ::readv(s.descriptor.native_handle(), pieces.data() + skip, static_cast<int>(pieces.size() - skip));
            } while (got < 0 && errno == EINTR);
            if (got < 0) {
                if (errno == EAGAIN) return std::make_error_code(nothing_queued); // EWOULDBLOCK too, on Linux
                if (errno == EBADFD) return make_error_code(errc::peer_closed);
                return detail::tap_impl::last_system_error();
            }
            if (got == 0) return make_error_code(errc::peer_closed); // as async_receive maps end of file
            std::size_t size = 0;
            if (s.check_read(static_cast<std::size_t>(got), size)) continue; // counted
            if (size > buffer.size()) return make_error_code(errc::buffer_too_small);
            ++s.stats.rx_frames;
            s.stats.rx_bytes += size;
            return size;
        }
        return std::make_error_code(nothing_queued); // a flood of bad frames: let the caller wait its turn
    }

    /// Writes one frame to the TAP; the frame is copied by the kernel before this returns.
    /// @return empty on success; errc::truncated / errc::bad_length for a frame of a bad size
    /// (tx_invalid); otherwise a drop counted in tx_dropped: std::errc::not_connected after
    /// close(), errc::peer_closed when the interface is gone, the write's errno (EAGAIN, EIO while
    /// the interface is down, ...).
    /// With a virtio-net header, writes an all-clear one before the frame.
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (s.vnet_len != 0) return send(frame, wire::offload{});
        if (auto why = check_frame_size(frame.size(), s.mtu)) {
            ++s.stats.tx_invalid;
            return why;
        }
        if (!s.descriptor.is_open()) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        // The const_cast is iovec's: writev does not write through it.
        const std::array<::iovec, 1> pieces{::iovec{const_cast<std::byte*>(frame.data()), frame.size()}};
        return write_frame(s, pieces, frame.size());
    }

    /// Writes one frame with its offload metadata (a virtio-net header before it); the kernel
    /// finishes its checksum and segments a super-frame. A GSO frame may be up to
    /// wire::offload::max_frame_len bytes, whatever the MTU.
    /// @return as send(frame), and: errc::unsupported for metadata other than all-clear on a
    /// device without vnet_header (wire::segment, or send_offloaded in backend/offload.hpp, does it
    /// in software then); offload::emit's error for metadata the spec forbids (both tx_invalid); the
    /// kernel refuses metadata that does not match the frame with EINVAL (tx_dropped).
    std::error_code send(wire::const_bytes frame, const wire::offload& meta) {
        auto& s = *state_;
        if (s.vnet_len == 0) {
            if (meta.is_plain()) return send(frame);
            ++s.stats.tx_invalid;
            return make_error_code(errc::unsupported);
        }
        const std::size_t limit = meta.is_gso() ? wire::offload::max_frame_len : max_frame_len(s.mtu);
        if (frame.size() < wire::ethernet::header_len || frame.size() > limit) {
            ++s.stats.tx_invalid;
            return make_error_code(frame.size() < wire::ethernet::header_len ? errc::truncated : errc::bad_length);
        }
        std::array<std::byte, wire::offload::header_len_v1> header{};
        if (auto ec = meta.emit(wire::mutable_bytes{header}.first(s.vnet_len))) {
            ++s.stats.tx_invalid;
            return ec;
        }
        if (!s.descriptor.is_open()) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        // The const_cast is iovec's: writev does not write through it.
        const std::array<::iovec, 2> pieces{::iovec{header.data(), s.vnet_len},
                                            ::iovec{const_cast<std::byte*>(frame.data()), frame.size()}};
        return write_frame(s, pieces, frame.size());
    }

private:
    /// One writev of `pieces` (a frame, after its virtio-net header when there is one), counting
    /// the `frame_len`-byte frame sent or dropped.
    template <std::size_t N>
    static std::error_code write_frame(detail::tap_impl::tap_state& s, const std::array<::iovec, N>& pieces, std::size_t frame_len) {
        ::ssize_t written = 0;
        do {
            written = ::writev(s.descriptor.native_handle(), pieces.data(), static_cast<int>(pieces.size()));
        } while (written < 0 && errno == EINTR);
        if (written < 0) {
            ++s.stats.tx_dropped;
            if (errno == EBADFD) return make_error_code(errc::peer_closed);
            return detail::tap_impl::last_system_error();
        }
        ++s.stats.tx_frames;
        s.stats.tx_bytes += frame_len;
        return {};
    }

public:

    /// Closes the fd (a TAP that is not persistent disappears with its last fd): a pending
    /// receive completes with std::errc::operation_canceled, later sends are dropped. Idempotent.
    void close() noexcept {
        if (!state_ || !state_->descriptor.is_open()) return;
        boost::system::error_code ignored;
        state_->descriptor.close(ignored);
    }

private:
    explicit tap_device(std::shared_ptr<detail::tap_impl::tap_state> state) noexcept : state_(std::move(state)) {}

    /// Wraps `fd` (not owned until success; the caller closes it on error).
    static result<tap_device> make(executor_type executor, int fd, const tap_options& options, std::string name) {
        auto state = std::make_shared<detail::tap_impl::tap_state>(std::move(executor), options.mtu, std::move(name));
        if (options.vnet_header) {
            state->vnet_len = options.vnet_header_len;
            state->gso_rx = options.tso4;
        }
        boost::system::error_code ec;
        state->descriptor.assign(fd, ec);
        if (ec) return std::error_code(ec);
        state->descriptor.non_blocking(true, ec); // send() writes directly and must never block
        if (ec) {
            state->descriptor.release();
            return std::error_code(ec);
        }
        return tap_device{std::move(state)};
    }

    std::shared_ptr<detail::tap_impl::tap_state> state_;
};

static_assert(burst_backend<tap_device>);
static_assert(offload_backend<tap_device>);

} // namespace ankanet::backend

#endif // __linux__
