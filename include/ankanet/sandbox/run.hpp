/// @file
/// ankanet::sandbox::run — run a command on a network of one's own: `ankanet-run -- COMMAND`,
/// for any program or test that wants a command's traffic to go through an ankanet network.
///
/// Theory of operation. run_command() composes the parts a hypervisor also has: a port on the
/// network whose MAC is drawn first (add_port), a command spawned in new namespaces with a TAP of
/// that MAC (spawn.hpp), the TAP's descriptor adopted as the port's backend (backend/tap.hpp),
/// with a virtio-net header and offloads when asked.
///
/// The address. The command's kernel runs no DHCP client, so the lease is taken on its behalf,
/// through the network's own DHCP server: claim_lease() hands the network's pure core a DISCOVER
/// and a REQUEST from the port's MAC (dhcp/client_frames.hpp) before the TAP is connected, and
/// reads the OFFER and the ACK from what the network sends that port. The server records the
/// lease like any other (it shows in listings, port forwards follow it, the ARP guard accepts the
/// guest's claims on it), so the address the command's interface gets and the server's lease can
/// never disagree. The interface then gets that address with the subnet's length, and a default
/// route via the gateway; the lease is renewed the same way at half its time, for as long as the
/// command runs.
///
/// The end. run_command() runs the io_context until the command ends, and returns its exit
/// status as a shell reports it (128 + N when a signal N killed it). SIGTERM and SIGHUP sent to
/// the caller are passed on to the command; SIGINT and SIGQUIT are not (the terminal sends them
/// to the whole foreground process group, the command included, and a second copy would make a
/// command that handles one Ctrl-C gracefully think the user pressed it twice). When the command
/// ends the network is stopped, so io.run() returns.
///
/// Limits: one command per network and io_context run; the io_context must be run by
/// run_command() alone (it installs a signal_set for SIGCHLD: another SIGCHLD handler in the
/// program would race it for the command's status).
#pragma once

#if defined(__linux__)

#include <ankanet/backend/tap.hpp>
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/network.hpp>
#include <ankanet/port_handle.hpp>
#include <ankanet/result.hpp>
#include <ankanet/sandbox/spawn.hpp>
#include <ankanet/wire/address.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace ankanet::sandbox {

/// Why claim_lease() got no lease.
enum class lease_claim_errc {
    no_mac = 1, ///< the port has no MAC yet (a from_first_frame port before its first frame)
    no_offer,   ///< the server sent no OFFER for the DISCOVER (pool exhausted, rate limit, ...)
    no_ack,     ///< the server sent no ACK for the REQUEST (a NAK, or nothing)
};

namespace detail {

class lease_claim_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "ankanet.sandbox.lease"; }
    std::string message(int code) const override {
        switch (static_cast<lease_claim_errc>(code)) {
        case lease_claim_errc::no_mac: return "the port has no MAC yet";
        case lease_claim_errc::no_offer: return "the DHCP server offered no address";
        case lease_claim_errc::no_ack: return "the DHCP server did not acknowledge the lease";
        }
        return "unknown lease claim error";
    }
};

} // namespace detail

/// The category of lease_claim_errc.
inline const std::error_category& lease_claim_category() noexcept {
    static const detail::lease_claim_category_impl instance;
    return instance;
}

/// Makes a std::error_code of a lease_claim_errc.
inline std::error_code make_error_code(lease_claim_errc e) noexcept { return {static_cast<int>(e), lease_claim_category()}; }

} // namespace ankanet::sandbox

/// lease_claim_errc converts to std::error_code.
template <>
struct std::is_error_code_enum<ankanet::sandbox::lease_claim_errc> : std::true_type {};

namespace ankanet::sandbox {

namespace detail {

/// Hands `frame` to the network's core as if `port` sent it, and returns the first DHCP reply of
/// type `want` and transaction `xid` the network sends that port.
template <class Network>
std::optional<dhcp::server_reply> dhcp_exchange(Network& network, port_handle port, wire::const_bytes frame,
                                                wire::dhcp::message_type want, std::uint32_t xid) {
    std::optional<dhcp::server_reply> got;
    network.input(port, frame, network.clock().now(), [&](port_handle to, wire::const_bytes reply) {
        if (to != port || got) return;
        auto parsed = dhcp::parse_server_reply(reply);
        if (parsed && parsed->type == want && parsed->xid == xid) got = *parsed;
    });
    return got;
}

inline std::uint32_t random_xid() {
    std::random_device source;
    return source();
}

} // namespace detail

/// Takes a lease for the VM on `port` from the network's DHCP server, on the VM's behalf (see the
/// top of the file): the server's ACK, whose yiaddr is the VM's address. Call it while no backend
/// is connected to `port` (the replies would otherwise go to the VM too) or to renew: `renewing`
/// names the address held, and a REQUEST for it is sent without a DISCOVER.
/// @return the ACK, or lease_claim_errc::no_mac, no_offer, no_ack.
template <class Network>
result<dhcp::server_reply> claim_lease(Network& network, port_handle port,
                                       std::optional<dhcp::server_reply> renewing = std::nullopt) {
    const auto mac = network.mac(port);
    if (!mac) return make_error_code(lease_claim_errc::no_mac);
    std::optional<dhcp::server_reply> offer = std::move(renewing);
    if (!offer) {
        const auto xid = detail::random_xid();
        offer = detail::dhcp_exchange(network, port, dhcp::discover_frame(*mac, xid).bytes(), wire::dhcp::message_type::offer, xid);
        if (!offer) return make_error_code(lease_claim_errc::no_offer);
    } else {
        offer->xid = detail::random_xid();
    }
    auto ack = detail::dhcp_exchange(network, port, dhcp::request_frame(*mac, *offer).bytes(), wire::dhcp::message_type::ack,
                                     offer->xid);
    if (!ack) return make_error_code(lease_claim_errc::no_ack);
    return *ack;
}

/// How run_command() runs a command on a network.
struct run_options {
    /// The command and its namespaces and TAP (its mac is the port's, set by run_command()).
    spawn_options spawn;
    /// The name of the command's port on the network (what logs and listings call it).
    std::string port_name = "command";
    /// Give the command a /etc/resolv.conf naming the gateway's DNS server (spawn_options::resolv_conf).
    bool resolv_conf = true;
    /// Told what happens, one line at a time (the address, a renewal that failed); may be empty.
    std::function<void(std::string_view)> log;
};

/// Runs `options.spawn.command` on `network` until it ends (see the top of the file), running
/// `io` meanwhile.
/// @return the command's exit status as a shell reports it; or the error that kept it from
/// starting, with `why` saying what in a sentence (the port refused, the child's set-up step that
/// failed, no lease). A command that could not be executed (child_step::exec) is not an error: its
/// status is 126 or 127, as a shell's, and `why` says why.
template <class Network>
result<int> run_command(boost::asio::io_context& io, Network& network, run_options options, std::string* why = nullptr) {
    const auto say = [&](std::string text) {
        if (options.log) options.log(text);
    };
    const auto refuse = [&](std::error_code ec, std::string text) -> result<int> {
        if (why != nullptr) *why = std::move(text);
        return ec;
    };
    std::string reason;
    auto port = network.add_port(options.port_name, port_mac::random(), &reason);
    if (!port) return refuse(port.error(), reason);
    const auto mac = *network.mac(*port);
    const auto gateway = network.config().subnet;
    options.spawn.mac = mac;
    if (options.resolv_conf) options.spawn.resolv_conf = fmt::format("nameserver {}\n", gateway.address());

    // Installed before the fork, so that the command's end cannot come before anyone listens.
    boost::asio::signal_set signals{io, SIGCHLD, SIGTERM, SIGHUP};
    signals.add(SIGINT);
    signals.add(SIGQUIT);

    auto spawned = spawn(options.spawn, &reason);
    if (!spawned) {
        (void)network.remove_port(*port);
        return refuse(spawned.error(), reason);
    }
    child& command = *spawned;
    auto tap = backend::tap_device::adopt(io.get_executor(), command.release_tap(), options.spawn.tap);
    if (!tap) {
        (void)network.remove_port(*port);
        return refuse(tap.error(), fmt::format("cannot drive the command's TAP: {}", tap.error().message()));
    }
    auto lease = claim_lease(network, *port);
    if (!lease) {
        (void)network.remove_port(*port);
        return refuse(lease.error(), fmt::format("no lease for the command's interface: {}", lease.error().message()));
    }
    const wire::ipv4_prefix address{lease->yiaddr, gateway.length()};
    if (const auto ec = command.configure({address, gateway.address()})) {
        (void)network.remove_port(*port);
        const auto text = fmt::format("{}: {}", to_string(command.failed_step()), ec.message());
        if (command.failed_step() == child_step::exec) {
            if (why != nullptr) *why = fmt::format("cannot execute {}: {}", options.spawn.command.front(), ec.message());
            return command.try_wait(true).value_or(126);
        }
        return refuse(ec, text);
    }
    say(fmt::format("{} {} on {} (lease {} s from {}), gateway and DNS {}", options.spawn.interface_name, address, mac,
                    lease->lease_time.value_or(0), lease->server_id.value_or(gateway.address()), gateway.address()));
    if (const auto ec = network.connect(*port, std::move(*tap))) {
        return refuse(ec, fmt::format("cannot connect the command's TAP: {}", ec.message()));
    }

    std::optional<int> status;
    boost::asio::steady_timer renewal{io};
    const auto finish = [&] {
        signals.cancel();
        renewal.cancel();
        network.stop();
    };
    const auto check = [&] {
        if (status) return;
        status = command.try_wait();
        if (status) finish();
    };
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        if (signal == SIGTERM || signal == SIGHUP) command.signal(signal);
        check();
        if (!status) signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    std::function<void(const boost::system::error_code&)> renew = [&](const boost::system::error_code& ec) {
        if (ec || status) return;
        auto renewed = claim_lease(network, *port, std::optional{*lease});
        if (renewed) lease = *renewed;
        else say(fmt::format("renewing the lease on {}: {}", address.address(), renewed.error().message()));
        renewal.expires_after(std::chrono::seconds{std::max<std::uint32_t>(lease->lease_time.value_or(3600) / 2, 2)});
        renewal.async_wait(renew);
    };
    renewal.expires_after(std::chrono::seconds{std::max<std::uint32_t>(lease->lease_time.value_or(3600) / 2, 2)});
    renewal.async_wait(renew);
    check(); // a command that ended before the signal handler was waiting
    io.run();
    if (!status) status = command.try_wait(true); // the network stopped first (its TAP failed)
    return status.value_or(125);
}

} // namespace ankanet::sandbox

#endif // __linux__
