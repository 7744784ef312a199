/// @file
/// ankanet::backend::af_packet_uplink — the bridge mode's uplink: a host interface's wire, through
/// an AF_PACKET socket (Linux).
///
/// Theory of operation. In bridge mode the VMs are devices on the host's LAN (issue 14): their
/// frames leave through a host interface as they are, and the LAN's frames for them come back.
/// `af_packet_uplink` is that interface seen as a frame backend (backend.hpp): a SOCK_RAW packet
/// socket bound to the interface's ifindex for every protocol (ETH_P_ALL). send() puts a whole
/// Ethernet frame on the wire; async_receive()/try_receive() hand over the frames the interface
/// received that are meant for the VMs.
///
/// What comes up, and why:
///  * Only frames for the VMs. A classic BPF filter (SO_ATTACH_FILTER), built by the pure function
///    af_packet_filter(), accepts a frame whose destination MAC is in a set — the VMs' own MACs
///    with direct MACs, the uplink's MAC with MAC translation — or has the group bit set
///    (broadcast, multicast). Everything else is dropped in the kernel, before it is copied to us:
///    the host's own unicast traffic never reaches user space. set_accepted_macs() replaces the
///    filter at run time as VMs come and go. The set holds at most af_packet_max_macs (64) MACs:
///    each MAC costs four instructions, and the first MAC's jump to "accept" spans the tests of
///    all the others: 4 * (n - 1) + 1 instructions, and a classic BPF conditional jump reaches 255.
///  * Promiscuous mode only when asked (af_packet_options::promiscuous, for direct MACs: the NIC
///    must take frames for MACs that are not its own). It is a PACKET_ADD_MEMBERSHIP
///    (PACKET_MR_PROMISC) on the socket, so the kernel counts it and ends it when the socket closes,
///    even when the process dies — no interface is left promiscuous behind us.
///  * Not what the host sends. Frames the host's own stack (or another packet socket, or we) sends
///    out of the interface are seen by packet sockets as PACKET_OUTGOING; PACKET_IGNORE_OUTGOING
///    (Linux >= 4.20) keeps them out of our queue, so a broadcast the host sends is not looped back
///    into the VMs a second time. On an older kernel the option is refused and each receive checks
///    sll_pkttype instead (the frame is then still copied, and skipped). Our own sends are never
///    read back either way (the kernel does not loop a packet socket's frames to itself).
///  * No window before the filter: the socket is created with protocol 0 (it receives nothing),
///    the filter attached, and only then bound with ETH_P_ALL to the interface.
///
/// The data path:
///  * Receive: the simpler of the two designs the issue names, one recvmsg per frame. An
///    async_receive waits for readability (async_wait on the socket), then reads with
///    MSG_DONTWAIT | MSG_TRUNC: the kernel returns the frame's real length even when it did not fit,
///    so an oversize frame is known and counted (rx_oversize), as is a runt (rx_runt); neither is
///    delivered. try_receive() (burst_backend) is the same read, synchronous, to drain a burst.
///    Nothing is measured yet: recvmmsg or a PACKET_RX_RING (TPACKET_V3) would save system calls per
///    frame, and is the next step if the bridge's throughput asks for it.
///  * Send: one sendmsg per frame on the bound socket, MSG_DONTWAIT. A full queue (EAGAIN/ENOBUFS),
///    an interface that is down (ENETDOWN) or any other error drops the frame (tx_dropped).
///  * The interface going down: the kernel reports ENETDOWN once to a reader. While the interface
///    still exists a receive swallows it and keeps waiting (frames resume when it comes back up);
///    once it is deleted a receive completes with errc::peer_closed, and send returns it.
///  * close() cancels a pending receive (std::errc::operation_canceled) and closes the socket, which
///    ends promiscuous mode.
/// mac() is the interface's own MAC (SIOCGIFHWADDR at open), mtu() its MTU (SIOCGIFMTU at open).
///
/// Offloads (af_packet_options::vnet_header, on by default). A packet socket sees frames as the
/// kernel holds them, after the NIC's offloads: GRO merges a TCP stream into super-frames of up to
/// 64 KiB, and a veth peer with checksum/TSO offload (the default) hands over TSO super-frames and
/// frames whose checksum is unfinished (CHECKSUM_PARTIAL). Without metadata those can only be
/// dropped as oversize or passed on with a bad checksum, which breaks TCP from the LAN to the VMs.
/// PACKET_VNET_HDR puts a virtio-net header (wire/offload.hpp) before every frame in both directions:
///  * Receive reads it into the uplink's state with the same recvmsg (iovecs: header, then the
///    caller's buffer) and keeps it for last_offload(); recvmsg then counts the header in what it
///    returns (10 + the frame's real length under MSG_TRUNC). A GSO frame may be up to
///    wire::offload::max_frame_len bytes, so a receive buffer should hold max_receive_len(). A
///    header that does not parse, or a frame the kernel cannot describe in one (it fails the read
///    with EINVAL and drops the frame), is counted in vnet_header_errors().
///  * Send writes an all-clear header before a frame, or the metadata given to send(frame, meta):
///    the kernel finishes the checksum and segments a super-frame (in software unless the NIC does
///    TSO), so a GSO frame is exempt from the MTU up to wire::offload::max_frame_len.
/// Limits of the header: packet sockets write it in host byte order and wire::offload reads
/// little-endian, so a big-endian host would misread it (not handled); it carries no VLAN tag (see
/// below); GSO types the kernel cannot express in it (tunnels, for one) are lost as
/// vnet_header_errors. Segmenting what comes up is the consumer's job (backend::send_offloaded).
///
/// Limits: Linux only; needs CAP_NET_RAW (open() says so when it is missing). Ethernet interfaces
/// only (ARPHRD_ETHER). The MTU and MAC are read once, at open. A VLAN tag the NIC stripped is not
/// put back (no PACKET_AUXDATA). Without vnet_header, unfinished checksums come up unfinished and
/// super-frames are dropped as oversize. Replacing the filter does not re-filter frames already
/// queued on the socket. No MAC is accepted beyond af_packet_max_macs.
#pragma once

#if defined(__linux__)

#include <ankanet/backend/backend.hpp>
#include <ankanet/backend/offload.hpp>
#include <ankanet/backend/port.hpp>
#include <ankanet/error.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/offload.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23 ///< linux/if_packet.h since 4.20; older headers lack it
#endif

namespace ankanet::backend {

/// Why open() or set_accepted_macs() refused: one clear line each (the category's message).
enum class af_packet_errc {
    no_such_interface = 1, ///< no interface by that name in this network namespace
    interface_down,        ///< the interface exists but is administratively down
    not_ethernet,          ///< the interface does not carry Ethernet frames
    no_permission,         ///< the packet socket needs CAP_NET_RAW
    too_many_macs,         ///< more than af_packet_max_macs MACs for the filter
    unsupported_mtu,       ///< the interface's MTU is outside [min_mtu, max_mtu]
    bad_name,              ///< empty, too long (IFNAMSIZ) or holding a NUL
};

namespace detail {

class af_packet_error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.af_packet"; }
    std::string message(int code) const override {
        switch (static_cast<af_packet_errc>(code)) {
        case af_packet_errc::no_such_interface: return "no such network interface";
        case af_packet_errc::interface_down: return "the network interface is down (ip link set IF up)";
        case af_packet_errc::not_ethernet: return "the network interface is not an Ethernet interface";
        case af_packet_errc::no_permission: return "cannot open a packet socket: CAP_NET_RAW is needed (run as root or grant it)";
        case af_packet_errc::too_many_macs: return "too many MACs for the uplink's filter (at most 64)";
        case af_packet_errc::unsupported_mtu: return "the network interface's MTU is outside what ankanet supports (576..65520)";
        case af_packet_errc::bad_name: return "not a valid network interface name";
        }
        return "unknown af_packet error";
    }
};

} // namespace detail

/// The af packet error category.
inline const std::error_category& af_packet_error_category() noexcept {
    static const detail::af_packet_error_category_impl instance;
    return instance;
}

/// Wraps `e` in a std::error_code of its category (found by argument-dependent lookup).
inline std::error_code make_error_code(af_packet_errc e) noexcept { return {static_cast<int>(e), af_packet_error_category()}; }

} // namespace ankanet::backend

template <>
struct std::is_error_code_enum<ankanet::backend::af_packet_errc> : std::true_type {};

namespace ankanet::backend {

/// The most MACs the uplink's filter holds (see the top of the file for why).
inline constexpr std::size_t af_packet_max_macs = 64;

/// How open() sets up the uplink.
struct af_packet_options {
    /// Put the interface in promiscuous mode for the socket's lifetime: needed with direct MACs,
    /// where frames for the VMs' own MACs must come in; not with MAC translation.
    bool promiscuous = false;
    /// The destination MACs let up at first, besides broadcast and multicast (set_accepted_macs()
    /// changes them later).
    std::vector<wire::mac_address> accepted_macs;
    /// Speak a virtio-net header on the socket (PACKET_VNET_HDR): super-frames and unfinished
    /// checksums come up with their metadata, and send(frame, offload) takes it (see "Offloads" at
    /// the top of this file).
    bool vnet_header = true;
};

/// The classic BPF program that accepts a frame whose destination MAC is in `macs` or has the
/// group bit set (broadcast, multicast), and drops every other frame (and one shorter than a MAC).
/// Pure: no socket. At most af_packet_max_macs MACs, else af_packet_errc::too_many_macs.
///
/// Layout: `ldb [0]; jset #1 -> accept`, then per MAC `ld [2]; jeq low32 ? next : skip 2;
/// ldh [0]; jeq high16 -> accept`, then `ret #0` (drop) and `ret #262144` (accept the whole frame).
inline result<std::vector<::sock_filter>> af_packet_filter(std::span<const wire::mac_address> macs) {
    if (macs.size() > af_packet_max_macs) return make_error_code(af_packet_errc::too_many_macs);
    constexpr std::uint32_t accept_len = 0x40000; // longer than any frame: keep it whole (as tcpdump)
    const auto insn = [](std::uint16_t code, std::uint8_t jt, std::uint8_t jf, std::uint32_t k) {
        return ::sock_filter{code, jt, jf, k};
    };
    const std::size_t n = macs.size();
    std::vector<::sock_filter> program;
    program.reserve(4 * n + 5);
    program.push_back(insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0));
    program.push_back(insn(BPF_JMP | BPF_JSET | BPF_K, 0, 1, 0x01)); // group bit: go to the ja below
    // An unconditional jump (32-bit offset) to accept, past every MAC's test and the drop.
    program.push_back(insn(BPF_JMP | BPF_JA, 0, 0, static_cast<std::uint32_t>(4 * n + 1)));
    for (std::size_t i = 0; i < n; ++i) {
        const auto& o = macs[i].octets();
        const std::uint32_t low = (std::uint32_t{o[2]} << 24) | (std::uint32_t{o[3]} << 16) | (std::uint32_t{o[4]} << 8) | o[5];
        const std::uint32_t high = (std::uint32_t{o[0]} << 8) | o[1];
        // From this MAC's last instruction to accept: the later MACs' tests, then the drop.
        const auto to_accept = static_cast<std::uint8_t>(4 * (n - 1 - i) + 1);
        program.push_back(insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, 2)); // bytes 2..5, network order
        program.push_back(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, low));
        program.push_back(insn(BPF_LD | BPF_H | BPF_ABS, 0, 0, 0)); // bytes 0..1
        program.push_back(insn(BPF_JMP | BPF_JEQ | BPF_K, to_accept, 0, high));
    }
    program.push_back(insn(BPF_RET | BPF_K, 0, 0, 0));
    program.push_back(insn(BPF_RET | BPF_K, 0, 0, accept_len));
    return program;
}

namespace detail::af_packet_impl {

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

inline std::error_code attach_filter(int fd, std::span<const wire::mac_address> macs) {
    auto program = af_packet_filter(macs);
    if (!program) return program.error();
    ::sock_fprog fprog{static_cast<unsigned short>(program->size()), program->data()};
    // Replaces the previous program atomically: no frame passes unfiltered in between.
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0) return last_system_error();
    return {};
}

/// How many bad-sized frames one read pass skips before yielding to the event loop.
inline constexpr int skips_per_pass = 64;

struct uplink_state {
    uplink_state(boost::asio::any_io_executor executor, std::string name_, int ifindex_, std::size_t mtu_, wire::mac_address mac_)
        : descriptor(std::move(executor)), name(std::move(name_)), ifindex(ifindex_), mtu(mtu_), mac(mac_) {}

    boost::asio::posix::stream_descriptor descriptor;
    std::string name;
    int ifindex;
    std::size_t mtu;
    wire::mac_address mac;
    counters stats;
    bool receiving = false;
    std::uint64_t outgoing_skipped = 0;

    // Offloads (see the top of the file).
    bool vnet = false; ///< PACKET_VNET_HDR is on
    std::array<std::byte, wire::offload::header_len> vnet_rx{};
    wire::offload last_offload;
    std::uint64_t vnet_header_errors = 0;

    /// The longest frame a receive delivers: with the header the kernel may hand over super-frames
    /// whatever we want (a packet socket has no TUNSETOFFLOAD to refuse them).
    std::size_t read_limit() const noexcept { return vnet ? wire::offload::max_frame_len : max_frame_len(mtu); }

    /// The interface was deleted (ifindex gone or reused under another name).
    bool interface_gone() const noexcept {
        return ::if_nametoindex(name.c_str()) != static_cast<unsigned>(ifindex);
    }

    /// One non-blocking pass: a frame of a valid size into `buffer` (its size), or the error
    /// (nothing_queued when the socket is empty; skips bad sizes, counted, at most skips_per_pass).
    result<std::size_t> read_one(wire::mutable_bytes buffer) {
        for (int attempt = 0; attempt < skips_per_pass; ++attempt) {
            ::sockaddr_ll from{};
            // With the header it comes first, into the state; the frame goes to the caller's buffer.
            std::array<::iovec, 2> pieces{::iovec{vnet_rx.data(), vnet ? vnet_rx.size() : 0},
                                          ::iovec{buffer.data(), buffer.size()}};
            ::msghdr message{};
            message.msg_name = &from;
            message.msg_namelen = sizeof from;
            message.msg_iov = pieces.data() + (vnet ? 0 : 1);
            message.msg_iovlen = vnet ? 2 : 1;
            ::ssize_t got = 0;
            do {
                got = ::recvmsg(descriptor.native_handle(), &message, MSG_DONTWAIT | MSG_TRUNC);
            } while (got < 0 && errno == EINTR);
            if (got < 0) {
                if (errno == EAGAIN) return std::make_error_code(nothing_queued);
                if (errno == ENETDOWN) {
                    // Reported once when the interface goes down or is deleted.
                    if (interface_gone()) return make_error_code(errc::peer_closed);
                    continue;
                }
                if (errno == EINVAL && vnet) {
                    // The kernel could not describe the frame's offload state in a header (a GSO
                    // type virtio has no value for) and dropped it.
                    ++vnet_header_errors;
                    continue;
                }
                return last_system_error();
            }
            if (from.sll_pkttype == PACKET_OUTGOING) { // only on kernels without PACKET_IGNORE_OUTGOING
                ++outgoing_skipped;
                continue;
            }
            // The real length (MSG_TRUNC), and with the header on, the header's 10 bytes on top
            // (packet_recvmsg returns vnet_hdr_len + skb->len).
            auto size = static_cast<std::size_t>(got);
            wire::offload meta;
            if (vnet) {
                auto parsed = wire::offload::parse(vnet_rx); // the kernel writes it whole before any frame
                if (size < vnet_rx.size() || !parsed) {
                    ++vnet_header_errors;
                    continue;
                }
                meta = *parsed;
                size -= vnet_rx.size();
                // DATA_VALID only says the kernel verified the checksum (CHECKSUM_UNNECESSARY): it
                // asks nothing of us. is_plain() ignores it, but == and emit() do not: kept, the
                // frame would compare unequal to plain metadata, and a send(frame, meta) onward
                // would write it into the next device's header, vouching for a check made here.
                meta.data_valid = false;
            }
            const std::size_t limit = meta.is_gso() ? wire::offload::max_frame_len : max_frame_len(mtu);
            if (size < wire::ethernet::header_len || size > limit) {
                count_bad_rx(stats, size < wire::ethernet::header_len ? errc::truncated : errc::bad_length);
                continue;
            }
            if (size > buffer.size()) return make_error_code(errc::buffer_too_small);
            last_offload = meta;
            ++stats.rx_frames;
            stats.rx_bytes += size;
            return size;
        }
        return std::make_error_code(nothing_queued);
    }
};

/// One async_receive: wait for readability, read; again until a good frame or an error.
struct receive_op {
    std::shared_ptr<uplink_state> state;
    wire::mutable_bytes buffer;

    template <class Self>
    void operator()(Self& self) {
        state->receiving = true;
        wait(self);
    }

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec) {
        if (ec) {
            complete(self, ec == boost::asio::error::operation_aborted ? std::make_error_code(std::errc::operation_canceled)
                                                                     : std::error_code(ec));
            return;
        }
        auto got = state->read_one(buffer);
        if (!got && is_nothing_queued(got.error())) {
            wait(self); // spurious wake-up, or only skipped frames: wait for the next
            return;
        }
        if (!got) {
            complete(self, got.error());
            return;
        }
        complete(self, {}, *got);
    }

    template <class Self>
    void complete(Self& self, std::error_code ec, std::size_t size = 0) {
        state->receiving = false; // before the handler runs: it may call try_receive
        self.complete(ec, size);
    }

    template <class Self>
    void wait(Self& self) {
        auto& s = *state;
        if (!s.descriptor.is_open()) {
            // Closed: complete as canceled through the executor, never inline.
            boost::asio::post(s.descriptor.get_executor(),
                              boost::asio::append(std::move(self), boost::system::error_code{boost::asio::error::operation_aborted}));
            return;
        }
        s.descriptor.async_wait(boost::asio::posix::stream_descriptor::wait_read, std::move(self));
    }
};

} // namespace detail::af_packet_impl

/// The bridge mode's uplink: a frame backend over an AF_PACKET socket on a host interface. See the
/// top of this file.
///
/// Movable, not copyable; a moved-from uplink may only be destroyed or assigned to. Use it from its
/// executor's thread.
///
/// @par Example
/// @code
/// af_packet_options options;
/// options.promiscuous = true;             // direct MACs
/// options.accepted_macs = {vm_mac};
/// auto uplink = af_packet_uplink::open(io.get_executor(), "eth0", options);
/// if (!uplink) log("bridge uplink eth0: {}", uplink.error().message()); // one clear line
/// @endcode
class af_packet_uplink {
public:
    using executor_type = boost::asio::any_io_executor; ///< the executor its asynchronous operations run on

    /// Opens the uplink on interface `interface_name` of the calling thread's network namespace.
    /// @return the uplink, or: af_packet_errc::bad_name, no_such_interface, interface_down,
    /// not_ethernet, unsupported_mtu, too_many_macs, no_permission (EPERM/EACCES from socket():
    /// no CAP_NET_RAW); or the errno of a setsockopt/bind that failed (PACKET_VNET_HDR's included).
    [[nodiscard]] static result<af_packet_uplink> open(executor_type executor, std::string_view interface_name,
                                                      const af_packet_options& options = {}) {
        using namespace detail::af_packet_impl;
        if (interface_name.empty() || interface_name.size() >= IFNAMSIZ || interface_name.find('\0') != std::string_view::npos) {
            return make_error_code(af_packet_errc::bad_name);
        }
        if (options.accepted_macs.size() > af_packet_max_macs) return make_error_code(af_packet_errc::too_many_macs);
        const std::string name{interface_name};
        const unsigned ifindex = ::if_nametoindex(name.c_str());
        if (ifindex == 0) return make_error_code(af_packet_errc::no_such_interface);

        // Protocol 0: the socket receives nothing until bind() names one, after the filter is on.
        unique_fd fd{::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
        if (fd.get() < 0) {
            if (errno == EPERM || errno == EACCES) return make_error_code(af_packet_errc::no_permission);
            return last_system_error();
        }
        ::ifreq request{};
        std::memcpy(request.ifr_name, name.data(), name.size());
        if (::ioctl(fd.get(), SIOCGIFFLAGS, &request) != 0) {
            return errno == ENODEV ? make_error_code(af_packet_errc::no_such_interface) : last_system_error();
        }
        if ((request.ifr_flags & IFF_UP) == 0) return make_error_code(af_packet_errc::interface_down);
        if (::ioctl(fd.get(), SIOCGIFHWADDR, &request) != 0) return last_system_error();
        if (request.ifr_hwaddr.sa_family != ARPHRD_ETHER) return make_error_code(af_packet_errc::not_ethernet);
        wire::mac_address::bytes_type octets{};
        std::memcpy(octets.data(), request.ifr_hwaddr.sa_data, octets.size());
        if (::ioctl(fd.get(), SIOCGIFMTU, &request) != 0) return last_system_error();
        const auto mtu = static_cast<std::size_t>(request.ifr_mtu);
        if (request.ifr_mtu < 0 || mtu < min_mtu || mtu > max_mtu) return make_error_code(af_packet_errc::unsupported_mtu);

        if (auto ec = attach_filter(fd.get(), options.accepted_macs)) return ec;
        if (options.vnet_header) {
            // Before bind: the header changes what every frame on the socket is.
            const int on = 1;
            if (::setsockopt(fd.get(), SOL_PACKET, PACKET_VNET_HDR, &on, sizeof on) != 0) return last_system_error();
        }
        const int ignore_outgoing = 1;
        // ENOPROTOOPT before Linux 4.20: the receive path checks sll_pkttype instead.
        if (::setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &ignore_outgoing, sizeof ignore_outgoing) != 0 &&
            errno != ENOPROTOOPT) {
            return last_system_error();
        }
        ::sockaddr_ll address{};
        address.sll_family = AF_PACKET;
        address.sll_protocol = htons(ETH_P_ALL);
        address.sll_ifindex = static_cast<int>(ifindex);
        if (::bind(fd.get(), reinterpret_cast<const ::sockaddr*>(&address), sizeof address) != 0) return last_system_error();
        if (options.promiscuous) {
            // Tied to the socket: the kernel drops it when the socket closes, however we end.
            ::packet_mreq membership{};
            membership.mr_ifindex = static_cast<int>(ifindex);
            membership.mr_type = PACKET_MR_PROMISC;
            if (::setsockopt(fd.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership, sizeof membership) != 0) {
                return last_system_error();
            }
        }

        auto state = std::make_shared<uplink_state>(std::move(executor), name, static_cast<int>(ifindex), mtu,
                                                    wire::mac_address{octets});
        state->vnet = options.vnet_header;
        boost::system::error_code ec;
        state->descriptor.assign(fd.get(), ec);
        if (ec) return std::error_code(ec);
        fd.release();
        return af_packet_uplink{std::move(state)};
    }

    /// Move-constructs (memberwise).
    af_packet_uplink(af_packet_uplink&&) noexcept = default;
    /// Move assignment.
    af_packet_uplink& operator=(af_packet_uplink&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    af_packet_uplink(const af_packet_uplink&) = delete;
    af_packet_uplink& operator=(const af_packet_uplink&) = delete;
    ~af_packet_uplink() { close(); }

    /// The executor its asynchronous operations run on.
    executor_type get_executor() const noexcept { return state_->descriptor.get_executor(); }
    /// The interface's MTU, read at open.
    std::size_t mtu() const noexcept { return state_->mtu; }
    /// The interface's own MAC, read at open (the MAC translated frames leave with).
    std::optional<wire::mac_address> mac() const noexcept { return state_->mac; }
    /// What it counted so far.
    counters stats() const noexcept { return state_->stats; }
    /// The name.
    const std::string& name() const noexcept { return state_->name; }
    /// The ifindex.
    int ifindex() const noexcept { return state_->ifindex; }
    /// Whether it is open.
    bool is_open() const noexcept { return state_ && state_->descriptor.is_open(); }
    /// Frames skipped because they were the host's own (only on kernels without PACKET_IGNORE_OUTGOING).
    std::uint64_t outgoing_skipped() const noexcept { return state_->outgoing_skipped; }

    /// The socket speaks a virtio-net header (af_packet_options::vnet_header): send(frame, offload)
    /// hands the metadata to the kernel (offload_backend, backend/offload.hpp).
    bool accepts_offload() const noexcept { return state_->vnet; }
    /// The virtio-net header of the frame a receive just delivered (all clear without vnet_header;
    /// DATA_VALID never set). NEEDS_CSUM: its checksum is unfinished; GSO: a super-frame
    /// (wire::complete_checksum and wire::segment finish them in software).
    const wire::offload& last_offload() const noexcept { return state_->last_offload; }
    /// The buffer size a receive needs for every frame: wire::offload::max_frame_len with the
    /// header on, else max_frame_len(mtu()).
    std::size_t max_receive_len() const noexcept { return state_->read_limit(); }
    /// Frames dropped on receive because their virtio-net header did not parse, or the kernel
    /// could not write one for them.
    std::uint64_t vnet_header_errors() const noexcept { return state_->vnet_header_errors; }

    /// Replaces the set of destination MACs let up (besides broadcast and multicast).
    /// @return empty; af_packet_errc::too_many_macs (the filter is unchanged); std::errc::not_connected
    /// after close(); setsockopt's errno.
    std::error_code set_accepted_macs(std::span<const wire::mac_address> macs) {
        if (!is_open()) return std::make_error_code(std::errc::not_connected);
        return detail::af_packet_impl::attach_filter(state_->descriptor.native_handle(), macs);
    }

    /// Receives one frame into `buffer`, which should hold max_receive_len() bytes.
    ///
    /// Completes with (error_code, size): a frame of a valid size; errc::buffer_too_small (a valid
    /// frame longer than `buffer`, dropped); std::errc::operation_canceled after close();
    /// errc::peer_closed once the interface is deleted; recvmsg's errno. Never completes inline.
    /// One at a time; `buffer` must stay valid until completion.
    template <class CompletionToken>
    auto async_receive(wire::mutable_bytes buffer, CompletionToken&& token) {
        return boost::asio::async_compose<CompletionToken, void(std::error_code, std::size_t)>(
            detail::af_packet_impl::receive_op{state_, buffer}, token, state_->descriptor);
    }

    /// Receives one frame now, without waiting (burst_backend, backend.hpp).
    /// @return the frame's size; std::errc::resource_unavailable_try_again (nothing queued now);
    /// std::errc::operation_in_progress (an async_receive is pending); or what async_receive would
    /// complete with.
    result<std::size_t> try_receive(wire::mutable_bytes buffer) {
        if (!is_open()) return std::make_error_code(std::errc::operation_canceled);
        if (state_->receiving) return std::make_error_code(std::errc::operation_in_progress);
        return state_->read_one(buffer);
    }

    /// Puts one Ethernet frame on the interface's wire; the kernel copies it before this returns.
    /// With the virtio-net header on, an all-clear one goes before it.
    /// @return empty on success; errc::truncated / errc::bad_length for a bad size (tx_invalid);
    /// otherwise a drop counted in tx_dropped: std::errc::not_connected after close(),
    /// errc::peer_closed once the interface is deleted, sendmsg's errno (EAGAIN/ENOBUFS on a full
    /// queue, ENETDOWN while the interface is down, ...).
    std::error_code send(wire::const_bytes frame) {
        auto& s = *state_;
        if (s.vnet) return send(frame, wire::offload{});
        if (auto why = check_frame_size(frame.size(), s.mtu)) {
            ++s.stats.tx_invalid;
            return why;
        }
        // The const_cast is iovec's: sendmsg does not write through it.
        const std::array<::iovec, 1> pieces{::iovec{const_cast<std::byte*>(frame.data()), frame.size()}};
        return write_frame(pieces, frame.size());
    }

    /// Puts one frame on the wire with its offload metadata, written as its virtio-net header: the
    /// kernel finishes a NEEDS_CSUM checksum and segments a GSO super-frame (in software when the
    /// NIC cannot). A GSO frame may be up to wire::offload::max_frame_len bytes, whatever the MTU.
    /// @return as send(frame), and (tx_invalid): errc::unsupported for metadata other than
    /// all-clear without vnet_header (backend::send_offloaded does the work in software then);
    /// offload::emit's error for metadata validate() refuses. The kernel refuses metadata that does
    /// not match the frame with EINVAL (tx_dropped).
    std::error_code send(wire::const_bytes frame, const wire::offload& meta) {
        auto& s = *state_;
        if (!s.vnet) {
            if (meta.is_plain()) return send(frame);
            ++s.stats.tx_invalid;
            return make_error_code(errc::unsupported);
        }
        const std::size_t limit = meta.is_gso() ? wire::offload::max_frame_len : max_frame_len(s.mtu);
        if (frame.size() < wire::ethernet::header_len || frame.size() > limit) {
            ++s.stats.tx_invalid;
            return make_error_code(frame.size() < wire::ethernet::header_len ? errc::truncated : errc::bad_length);
        }
        std::array<std::byte, wire::offload::header_len> header{};
        if (auto ec = meta.emit(header)) {
            ++s.stats.tx_invalid;
            return ec;
        }
        const std::array<::iovec, 2> pieces{::iovec{header.data(), header.size()},
                                            ::iovec{const_cast<std::byte*>(frame.data()), frame.size()}};
        return write_frame(pieces, frame.size());
    }

    /// Closes the socket (ending promiscuous mode): a pending receive completes with
    /// std::errc::operation_canceled, later sends are dropped. Idempotent.
    void close() noexcept {
        if (!state_ || !state_->descriptor.is_open()) return;
        boost::system::error_code ignored;
        state_->descriptor.close(ignored);
    }

private:
    explicit af_packet_uplink(std::shared_ptr<detail::af_packet_impl::uplink_state> state) noexcept : state_(std::move(state)) {}

    /// One sendmsg of `pieces` (the frame, after its header when there is one), counting the
    /// `frame_len`-byte frame sent or dropped.
    template <std::size_t N>
    std::error_code write_frame(const std::array<::iovec, N>& pieces, std::size_t frame_len) {
        auto& s = *state_;
        if (!s.descriptor.is_open()) {
            ++s.stats.tx_dropped;
            return std::make_error_code(std::errc::not_connected);
        }
        ::msghdr message{};
        message.msg_iov = const_cast<::iovec*>(pieces.data()); // msghdr's: sendmsg does not write it
        message.msg_iovlen = N;
        ::ssize_t sent = 0;
        do {
            sent = ::sendmsg(s.descriptor.native_handle(), &message, MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) {
            const int error = errno; // before interface_gone(), which may change it
            ++s.stats.tx_dropped;
            if ((error == ENXIO || error == ENODEV || error == ENETDOWN) && s.interface_gone()) {
                return make_error_code(errc::peer_closed);
            }
            return {error, std::system_category()};
        }
        ++s.stats.tx_frames;
        s.stats.tx_bytes += frame_len;
        return {};
    }

    std::shared_ptr<detail::af_packet_impl::uplink_state> state_;
};

static_assert(burst_backend<af_packet_uplink>);
static_assert(offload_backend<af_packet_uplink>);
static_assert(offload_receiver<af_packet_uplink>);

} // namespace ankanet::backend

#endif // __linux__
