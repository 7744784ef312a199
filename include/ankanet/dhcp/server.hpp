/// @file
/// ankanet::dhcp::basic_server — the DHCPv4 server (RFC 2131, RFC 2132) of a VM network's gateway.
///
/// Theory of operation. A pure engine, like gateway::responder: every Ethernet frame a guest sends
/// may be offered to handle(); the frames that are DHCP messages for this server are consumed
/// (answered, or counted and dropped) and every reply is handed, complete (Ethernet + IPv4 + UDP +
/// DHCP, checksums filled), to a callback. No sockets, no threads; time is the `now` argument or,
/// when absent, the pool's Clock. Leases are the business of the basic_lease_pool the server owns:
/// the server turns messages into pool operations and pool results into replies.
///
/// Which frames are ours. An untagged IPv4 frame to our MAC or to the Ethernet broadcast, carrying
/// UDP to port 67, addressed to 255.255.255.255, to the subnet's broadcast address or to
/// server_address. That much is read straight off the bytes, so a frame is claimed as soon as its
/// UDP destination port can be seen; anything cut shorter than that, and later IP fragments (which
/// carry no UDP header to tell whose they are), are left to the caller. Once claimed, everything is
/// validated (IPv4 header checksum, UDP length and checksum, the DHCP message and its options) and
/// a frame that fails is counted and dropped: server_counters says why.
///
/// What is done with a message (RFC 2131 §4.3):
/// @code{.unparsed}
///   DISCOVER            pool.offer() (option 50 honoured by the pool) → OFFER; pool exhausted → silence.
///   REQUEST, server id  SELECTING. Another server's id: the client chose it; an offer we made and the
///                       client never took is released at once, and we stay silent. Ours: confirm
///                       option 50 (below).
///   REQUEST, ciaddr     RENEWING (unicast) or REBINDING (broadcast): confirm ciaddr.
///   REQUEST, option 50  INIT-REBOOT (no server id, ciaddr 0): confirm option 50.
///   confirm(address)    NAK when the address is not on our subnet, when the client holds a bound lease
///                       on another address, when the client has a reservation for another address,
///                       or when the pool refuses the commit (in use, reserved, excluded, quarantined,
///                       outside the range); otherwise pool.commit() → ACK.
///                       Choice where RFC 2131 says "remain silent" (INIT-REBOOT, REBINDING by a client
///                       we have no record of): this server is authoritative — it is the only DHCP
///                       server on a network it builds itself — so an address that is free for this
///                       client is committed and ACKed (a lease forgotten by a restart with a memory
///                       store is taken back seamlessly, as dnsmasq does), and one the client cannot
///                       have is NAKed at once instead of letting the client wait for its lease to run
///                       out.
///   DECLINE             pool.decline(option 50): quarantined. RELEASE: pool.release(ciaddr). No reply.
///   INFORM              ACK with the configuration options, no lease time and yiaddr 0, to ciaddr.
/// @endcode
/// A store that refuses a write (a full disk under file_lease_store) is the server's problem, not the
/// client's: no NAK, no ACK — the client retries — and store_errors counts it.
///
/// Replies (RFC 2131 §4.1 and table 3; relays are not supported, so giaddr ≠ 0 is dropped): a NAK
/// is broadcast; otherwise a request with ciaddr set is answered by unicast to ciaddr, one with the
/// broadcast flag by broadcast, and the rest by unicast to yiaddr at chaddr. IPv4 TTL 64 from
/// server_address, UDP 67 → 68. Options: 53 and 54 first; then the options the client asked for in
/// its parameter request list (55), in its order, among those served here (1, 3, 6, 12, 15, 26, 28,
/// 51, 58, 59, 119, 121); then those of 51, 58, 59 (lease replies) and 1, 3, 6 it did not ask for,
/// since a client sending no list still needs them; last the client's own identifier (61) echoed
/// back, as RFC 6842 asks. A NAK carries 53, 54, a message (56) and 61 only. A reply never exceeds
/// the client's maximum message size (57; 576 bytes of IP datagram by default) nor the link MTU
/// (interface_mtu, else 1500): when the options do not all fit, the least important are left out
/// whole — never truncated. In order of importance: 53, 54; 51, 56, 61; 1, 3, 6, 58, 59; then the
/// requested options in the client's order of preference.
///
/// Costs: the reply is built in a fixed buffer inside the server and the lease request handed to the
/// pool is a reused member, so beyond what the pool itself allocates nothing is allocated per packet.
/// Not thread-safe: one thread owns a server (and its pool).
#pragma once

#include <ankanet/dhcp/lease_pool.hpp>
#include <ankanet/result.hpp>
#include <ankanet/wire/address.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dhcp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/frame.hpp>
#include <ankanet/wire/ipv4.hpp>
#include <ankanet/wire/udp.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ankanet::dhcp {

/// What the server tells its clients, beyond what the pool decides (subnet, range, lease time).
struct server_config {
    wire::ipv4_address server_address;            ///< server identifier (54) and reply source: the gateway
    wire::mac_address server_mac;                 ///< Ethernet source of replies
    std::vector<wire::ipv4_address> routers;      ///< option 3; empty → { server_address }
    std::vector<wire::ipv4_address> dns_servers;  ///< option 6; empty → { server_address }
    std::string domain_name;                      ///< option 15 when not empty
    std::vector<std::string> search_domains;      ///< option 119 when not empty
    std::optional<std::uint16_t> interface_mtu;   ///< option 26 when set; also caps reply size
    std::vector<wire::dhcp::classless_route> classless_routes; ///< option 121 when not empty
};

/// What happened to a lease, for logging.
enum class lease_event_kind { offered, acknowledged, nacked, declined, released, informed };

/// One lease event. The views are valid only during the observer call.
struct lease_event {
    lease_event_kind kind; ///< kind
    wire::mac_address mac;         ///< the client's chaddr
    wire::ipv4_address address;    ///< offered / granted / refused / declined / released / informing
    std::string_view hostname;     ///< option 12 as sent, or the lease's (may be empty)
    std::string_view reason;       ///< NAK: why; DECLINE: the client's message (56), if any
};

/// What the server saw and did. A frame handle() claims either counts as a received message
/// (discovers … informs) or is dropped before that (dropped_malformed, dropped_unsupported). A
/// received message that gets no reply says why in ignored_*, pool_exhausted, store_errors, or in
/// dropped_malformed when it lacks the address it must name.
struct server_counters {
    // Well-formed messages received, by type.
    std::uint64_t discovers = 0; ///< DHCPDISCOVERs received
    std::uint64_t requests = 0; ///< DHCPREQUESTs received
    std::uint64_t declines = 0; ///< DHCPDECLINEs received
    std::uint64_t releases = 0; ///< DHCPRELEASEs received
    std::uint64_t informs = 0; ///< DHCPINFORMs received
    // Replies sent, by type (ACKs to INFORM included in acks).
    std::uint64_t offers = 0; ///< DHCPOFFERs sent
    std::uint64_t acks = 0; ///< DHCPACKs sent

    /// naks
    std::uint64_t naks = 0;
    /// Truncated or malformed IPv4 / UDP / DHCP, bad IPv4 or UDP checksum, op not BOOTREQUEST, no
    /// message type, a chaddr that is not a unicast MAC, a REQUEST / DECLINE / RELEASE without the
    /// address it must name.
    std::uint64_t dropped_malformed = 0;
    /// Well-formed but not served: relayed (giaddr set), hardware not Ethernet/6, IP fragments,
    /// message types a client does not send (OFFER, ACK, NAK) or unknown ones, RFC 3396 split options.
    std::uint64_t dropped_unsupported = 0;
    // Of the messages received, those that got no reply, and why.
    std::uint64_t ignored_not_for_us = 0; ///< names another server (54); INFORM from off the subnet
    std::uint64_t ignored_no_lease = 0;   ///< DECLINE / RELEASE of an address the client does not hold
    std::uint64_t pool_exhausted = 0;     ///< DISCOVER with no free address left
    std::uint64_t store_errors = 0;       ///< the lease store refused a write (no reply; the client retries)
    std::uint64_t reply_errors = 0;       ///< a reply could not be built (not expected to happen)
    // Messages refused for the port they came from (handle() with a port binding); no reply.
    std::uint64_t dropped_foreign_chaddr = 0;   ///< chaddr is not the MAC of the port the message came from
    std::uint64_t dropped_foreign_client = 0;   ///< its client identifier names a lease of another attached MAC
};

/// @par PortBinding requirements
/// What handle() needs to tie a message to the VM port it arrived on: `b.port_mac()` → the MAC
/// registered on that port; `b.attached(mac)` → whether some port of the network holds `mac` now.
template <class B>
concept port_binding = requires(const B& b, wire::mac_address m) {
    { b.port_mac() } -> std::convertible_to<wire::mac_address>;
    { b.attached(m) } -> std::convertible_to<bool>;
};

/// No binding: messages are taken as their chaddr and client identifier say (a server that sees
/// only its own link's trusted clients, or a test).
struct unbound {};

/// The DHCP server engine (see the theory of operation at the top of this file).
/// @tparam LeaseStore, Clock the pool's policies (see basic_lease_pool).
/// @par Example
/// @code
/// auto pool = dhcp::lease_pool::create(pool_config);
/// auto server = dhcp::server::create({.server_address = gateway, .server_mac = gateway_mac}, std::move(*pool));
/// server->handle(frame, [&](wire::const_bytes reply) { port.send(reply); });
/// @endcode
template <class LeaseStore = memory_lease_store, class Clock = std::chrono::system_clock>
class basic_server {
public:
    using pool_type = basic_lease_pool<LeaseStore, Clock>; ///< the pool type

    /// The longest frame the server emits: a 1500-byte IP datagram in Ethernet.
    static constexpr std::size_t max_frame_len = wire::ethernet::header_len + 1500;

    /// Builds a server around `pool`. Refuses (lease_errc::bad_config, `why` saying what) a
    /// server_address outside the pool's subnet, inside its range (unless the pool excludes it) or
    /// equal to the subnet's network or broadcast address, a server_mac that is not unicast, an interface_mtu below 576, and option
    /// values that cannot be encoded (a bad search domain, too many routes …). Empty routers and
    /// dns_servers become { server_address } (config() shows the values in use).
    static result<basic_server> create(server_config config, pool_type pool, std::string* why = nullptr);

    /// Offers one Ethernet frame a guest sent. Returns true when the frame was a DHCP message for this
    /// server (answered, or counted and dropped), false otherwise (the caller passes it on).
    /// `emit(wire::const_bytes frame)` is called with each complete reply frame; it must copy the
    /// bytes before returning.
    template <class Emit>
        requires std::invocable<Emit&, wire::const_bytes>
    bool handle(wire::const_bytes frame, sys_seconds now, Emit&& emit) {
        return handle(wire::parsed_frame::parse(frame), now, emit);
    }

    /// As above, for a frame its caller has parsed already (a network parses each frame once).
    template <class Emit>
        requires std::invocable<Emit&, wire::const_bytes>
    bool handle(const wire::parsed_frame& frame, sys_seconds now, Emit&& emit) {
        return handle(frame, now, emit, unbound{});
    }

    /// As above, for a message that arrived on a VM port: it is refused (counted, no reply) when its
    /// chaddr is not the port's MAC (a forged RELEASE, DECLINE or REQUEST in another VM's name), or
    /// when its client identifier names a lease granted to another MAC that is still attached (the
    /// same forgery by option 61). A lease whose MAC is no longer attached may be taken over by its
    /// client identifier: a VM whose MAC changed keeps its address.
    template <class Emit, class Binding>
        requires std::invocable<Emit&, wire::const_bytes> && (port_binding<Binding> || std::same_as<Binding, unbound>)
    bool handle(const wire::parsed_frame& frame, sys_seconds now, Emit&& emit, const Binding& binding);

    /// As above, with `now` from the pool's clock.
    template <class Emit>
        requires std::invocable<Emit&, wire::const_bytes>
    bool handle(wire::const_bytes frame, Emit&& emit) {
        return handle(frame, pool_.now(), emit);
    }

    /// Called for every lease event (for logging); may be empty.
    void set_observer(std::function<void(const lease_event&)> observer) { observer_ = std::move(observer); }

    /// The pool.
    const pool_type& pool() const noexcept { return pool_; }
    /// The pool.
    pool_type& pool() noexcept { return pool_; }
    /// The configuration it was made with.
    const server_config& config() const noexcept { return config_; }

    /// Whether `frame` is addressed to this server: UDP to port 67, at its MAC or broadcast, at its
    /// address or a broadcast one. handle() takes exactly these frames (and validates the rest).
    bool addressed_to_me(const wire::parsed_frame& frame) const noexcept {
        // What identifies a DHCP message to us was read when the frame was parsed. A later
        // fragment carries no UDP header to say whose it is (has_ports is false for it).
        return frame.is_ipv4() && frame.protocol == wire::ipv4::protocol::udp && for_us(frame.ip_destination) &&
               (frame.destination.is_broadcast() || frame.destination == config_.server_mac) && frame.has_ports &&
               frame.destination_port == wire::dhcp::server_port;
    }
    /// What it counted so far.
    const server_counters& stats() const noexcept { return stats_; }

private:
    enum class reply_kind : std::uint8_t { offer, ack, inform, nak };

    /// What a reply says, beyond what it copies from the request.
    struct reply {
        reply_kind kind = reply_kind::ack;
        wire::ipv4_address yiaddr;
        wire::ipv4_address ciaddr;
        std::uint32_t lease_seconds = 0;
        std::string_view host_name; ///< option 12 to echo (when asked for)
        std::string_view message;   ///< option 56 (NAK)
    };

    /// A configured option, encoded once at create() into encoded_.
    struct stored_option {
        std::uint8_t code = 0;
        std::uint16_t offset = 0;
        std::uint16_t length = 0;
    };

    /// One option a reply may carry: its code, its size on the wire and how much it matters
    /// (lower is kept first).
    struct planned_option {
        std::uint8_t code = 0;
        std::uint16_t size = 0;
        std::uint16_t rank = 0;
        bool keep = false;
    };

    /// Options in a plan: 12 served codes, 56 and 61.
    static constexpr std::size_t max_planned = 16;

    basic_server(server_config config, pool_type pool) : config_(std::move(config)), pool_(std::move(pool)) {}

    std::error_code prepare(std::string& why);
    template <class Write> std::error_code store_option(std::uint8_t code, std::string& why, Write write);
    const stored_option* find_stored(std::uint8_t code) const noexcept {
        for (const auto& o : stored_) {
            if (o.code == code) return &o;
        }
        return nullptr;
    }
    wire::const_bytes stored_value(const stored_option& o) const noexcept {
        return wire::const_bytes{encoded_}.subspan(o.offset, o.length);
    }

    bool for_us(wire::ipv4_address destination) const noexcept {
        return destination.is_broadcast() || destination == config_.server_address ||
               destination == pool_.config().subnet.broadcast();
    }

    std::optional<wire::ipv4_address> reserved_address(const client_identity& c) const;
    void fill_request(const wire::dhcp::repr& m, wire::mac_address mac);

    template <class Emit> void on_discover(const wire::dhcp::repr& m, sys_seconds now, Emit& emit);
    template <class Emit> void on_request(const wire::dhcp::repr& m, sys_seconds now, Emit& emit);
    void on_decline(const wire::dhcp::repr& m, const wire::dhcp::packet<wire::const_bytes>& raw, sys_seconds now);
    void on_release(const wire::dhcp::repr& m, sys_seconds now);
    template <class Emit> void on_inform(const wire::dhcp::repr& m, Emit& emit);
    template <class Emit>
    void confirm(const wire::dhcp::repr& m, wire::ipv4_address address, sys_seconds now, Emit& emit);
    template <class Emit>
    void nak(const wire::dhcp::repr& m, wire::ipv4_address address, std::string_view why, Emit& emit);

    /// Builds the reply frame in buffer_ and emits it; false (counted) when it cannot be built.
    template <class Emit> bool send(const wire::dhcp::repr& m, const reply& r, Emit& emit);
    std::optional<std::size_t> option_size(std::uint8_t code, const reply& r) const noexcept;
    std::error_code write_option(wire::dhcp::option_writer& w, std::uint8_t code, const wire::dhcp::repr& m,
                                 const reply& r) const noexcept;

    void notify(lease_event_kind kind, wire::ipv4_address address, std::string_view hostname,
                std::string_view reason = {}) {
        if (observer_) observer_(lease_event{kind, scratch_.client.mac, address, hostname, reason});
    }

    static bool client_error(std::error_code e) noexcept;
    static std::string_view nak_reason(std::error_code e) noexcept;
    static std::uint32_t clamp_seconds(seconds s) noexcept {
        constexpr std::int64_t most = 0xfffffffe; // 0xffffffff means "infinite"
        return static_cast<std::uint32_t>(std::clamp<std::int64_t>(s.count(), 0, most));
    }

    server_config config_;
    pool_type pool_;
    std::function<void(const lease_event&)> observer_;
    server_counters stats_;
    std::vector<std::byte> encoded_;       // values of the configured options, back to back
    std::vector<stored_option> stored_;    // where each one is in encoded_
    std::size_t link_limit_ = 0;           // the largest DHCP message the link carries
    lease_request scratch_;                // reused for every message: no allocation once warm
    std::uint16_t identification_ = 0;     // IPv4 identification of the next reply
    std::array<std::byte, max_frame_len> buffer_{};
};

/// The server with the default policies: leases in memory, time from the system clock.
using server = basic_server<>;

// -------------------------------------------------------------------------------------------------
// Implementation

template <class S, class C>
result<basic_server<S, C>> basic_server<S, C>::create(server_config config, pool_type pool, std::string* why) {
    basic_server built{std::move(config), std::move(pool)};
    std::string reason;
    if (auto error = built.prepare(reason)) {
        if (why != nullptr) *why = std::move(reason);
        return error;
    }
    return result<basic_server>{std::move(built)};
}

template <class S, class C>
std::error_code basic_server<S, C>::prepare(std::string& why) {
    auto& c = config_;
    const auto& pc = pool_.config();
    const auto subnet = pc.subnet;
    const auto a = c.server_address;
    if (!subnet.contains(a)) {
        why = fmt::format("DHCP server address {} is outside the subnet {}", a, subnet);
        return lease_errc::bad_config;
    }
    if (subnet.length() < 31 && (a == subnet.network() || a == subnet.broadcast())) {
        why = fmt::format("DHCP server address {} is the network or broadcast address of {}", a, subnet);
        return lease_errc::bad_config;
    }
    // Inside the range it must be excluded from the pool, or a guest could be given it.
    if (a.to_u32() >= pc.first.to_u32() && a.to_u32() <= pc.last.to_u32() &&
        std::find(pc.excluded.begin(), pc.excluded.end(), a) == pc.excluded.end()) {
        why = fmt::format("DHCP server address {} lies inside the DHCP range {}-{} and is not excluded", a, pc.first, pc.last);
        return lease_errc::bad_config;
    }
    if (!c.server_mac.is_unicast()) {
        why = fmt::format("DHCP server MAC {} is not a unicast address", c.server_mac);
        return lease_errc::bad_config;
    }
    if (c.interface_mtu && *c.interface_mtu < wire::dhcp::min_max_message_size) {
        why = fmt::format("interface MTU {} is below 576, the datagram every DHCP client must accept",
                          *c.interface_mtu);
        return lease_errc::bad_config;
    }
    if (c.routers.empty()) c.routers.push_back(a);
    if (c.dns_servers.empty()) c.dns_servers.push_back(a);

    // Encode every configured option once, with the writer replies use, so a value that cannot be
    // encoded is refused here rather than silently missing from every reply.
    namespace oc = wire::dhcp::option_code;
    std::error_code error;
    const auto add = [&](std::uint8_t code, auto write) {
        if (!error) error = store_option(code, why, write);
    };
    add(oc::subnet_mask, [&](auto& w) { return w.subnet_mask(subnet.netmask()); });
    add(oc::router, [&](auto& w) { return w.routers(c.routers); });
    add(oc::dns_servers, [&](auto& w) { return w.dns_servers(c.dns_servers); });
    if (!c.domain_name.empty()) add(oc::domain_name, [&](auto& w) { return w.domain_name(c.domain_name); });
    if (c.interface_mtu) add(oc::interface_mtu, [&](auto& w) { return w.interface_mtu(*c.interface_mtu); });
    add(oc::broadcast_address, [&](auto& w) { return w.broadcast_address(subnet.broadcast()); });
    if (!c.search_domains.empty()) {
        add(oc::domain_search, [&](auto& w) {
            std::vector<std::string_view> names(c.search_domains.begin(), c.search_domains.end());
            return w.domain_search(names);
        });
    }
    if (!c.classless_routes.empty()) {
        add(oc::classless_static_routes, [&](auto& w) { return w.classless_static_routes(c.classless_routes); });
    }
    if (error) return error;

    const std::size_t mtu = std::min<std::size_t>(c.interface_mtu.value_or(1500), 1500);
    link_limit_ = mtu - wire::dhcp::ip_udp_overhead;
    return {};
}

template <class S, class C>
template <class Write>
std::error_code basic_server<S, C>::store_option(std::uint8_t code, std::string& why, Write write) {
    std::array<std::byte, wire::dhcp::options_offset + 2 + wire::dhcp::max_option_len + 1> scratch{};
    wire::dhcp::option_writer w{scratch};
    if (auto error = write(w)) {
        why = fmt::format("DHCP option {} cannot be encoded: {}", code, error.message());
        return lease_errc::bad_config;
    }
    const auto value = wire::const_bytes{scratch}.subspan(wire::dhcp::options_offset);
    const std::size_t length = static_cast<std::uint8_t>(value[1]);
    stored_.push_back(stored_option{code, static_cast<std::uint16_t>(encoded_.size()),
                                    static_cast<std::uint16_t>(length)});
    encoded_.insert(encoded_.end(), value.begin() + 2, value.begin() + 2 + static_cast<std::ptrdiff_t>(length));
    return {};
}

// The pool's own precedence: a reservation by client identifier first, then by MAC.
template <class S, class C>
std::optional<wire::ipv4_address> basic_server<S, C>::reserved_address(const client_identity& c) const {
    const auto& reservations = pool_.config().reservations;
    if (!c.client_id.empty()) {
        for (const auto& r : reservations) {
            if (!r.client_id.empty() && r.client_id == c.client_id) return r.address;
        }
    }
    for (const auto& r : reservations) {
        if (r.mac && *r.mac == c.mac) return r.address;
    }
    return std::nullopt;
}

template <class S, class C>
void basic_server<S, C>::fill_request(const wire::dhcp::repr& m, wire::mac_address mac) {
    scratch_.client.mac = mac;
    const auto* id = reinterpret_cast<const std::uint8_t*>(m.client_id.data());
    scratch_.client.client_id.assign(id, id + m.client_id.size());
    scratch_.requested = m.requested_ip;
    scratch_.hostname.assign(m.host_name);
}

template <class S, class C>
template <class Emit, class Binding>
    requires std::invocable<Emit&, wire::const_bytes> && (port_binding<Binding> || std::same_as<Binding, unbound>)
bool basic_server<S, C>::handle(const wire::parsed_frame& frame, sys_seconds now, Emit&& emit, const Binding& binding) {
    namespace ipv4 = wire::ipv4;
    namespace udp = wire::udp;
    namespace dhcp = wire::dhcp;

    if (!addressed_to_me(frame)) return false;
    const ipv4::packet<wire::const_bytes> ip{frame.ip};

    // Ours from here on: answered, or counted and dropped.
    const auto ip_header = ipv4::repr::parse(ip);
    if (!ip_header) {
        ++stats_.dropped_malformed;
        return true;
    }
    if (ip.is_fragment()) { // a first fragment: not reassembled here, and no client sends one
        ++stats_.dropped_unsupported;
        return true;
    }
    const udp::packet<wire::const_bytes> datagram{ip.payload()};
    if (!udp::repr::parse(datagram, ip_header->source, ip_header->destination)) {
        ++stats_.dropped_malformed;
        return true;
    }
    const dhcp::packet<wire::const_bytes> raw{datagram.payload()};
    const auto parsed = dhcp::repr::parse(raw);
    if (!parsed) {
        if (parsed.error() == errc::unsupported) ++stats_.dropped_unsupported;
        else ++stats_.dropped_malformed;
        return true;
    }
    const dhcp::repr& m = *parsed;
    if (m.op != dhcp::boot_request || !m.message_type) {
        ++stats_.dropped_malformed;
        return true;
    }
    const auto mac = m.client_mac();
    if (!mac || !m.giaddr.is_unspecified()) { // other hardware, or relayed: not served
        ++stats_.dropped_unsupported;
        return true;
    }
    if (!mac->is_unicast()) {
        ++stats_.dropped_malformed;
        return true;
    }

    if constexpr (!std::same_as<Binding, unbound>) {
        if (*mac != binding.port_mac()) {
            ++stats_.dropped_foreign_chaddr;
            return true;
        }
    }
    fill_request(m, *mac);
    if constexpr (!std::same_as<Binding, unbound>) {
        if (const auto holder = pool_.holder_of(scratch_.client); holder && *holder != *mac && binding.attached(*holder)) {
            ++stats_.dropped_foreign_client;
            return true;
        }
    }
    switch (*m.message_type) {
    case dhcp::message_type::discover:
        ++stats_.discovers;
        on_discover(m, now, emit);
        break;
    case dhcp::message_type::request:
        ++stats_.requests;
        on_request(m, now, emit);
        break;
    case dhcp::message_type::decline:
        ++stats_.declines;
        on_decline(m, raw, now);
        break;
    case dhcp::message_type::release:
        ++stats_.releases;
        on_release(m, now);
        break;
    case dhcp::message_type::inform:
        ++stats_.informs;
        on_inform(m, emit);
        break;
    default: // OFFER, ACK, NAK: server messages, not a client's
        ++stats_.dropped_unsupported;
        break;
    }
    return true;
}

template <class S, class C>
template <class Emit>
void basic_server<S, C>::on_discover(const wire::dhcp::repr& m, sys_seconds now, Emit& emit) {
    const auto offered = pool_.offer(scratch_, now);
    if (!offered) {
        if (offered.error() == lease_errc::pool_exhausted) ++stats_.pool_exhausted;
        else ++stats_.store_errors;
        return;
    }
    // The OFFER states the lease a REQUEST will be granted, not the offer's short hold.
    const std::string_view host = m.host_name.empty() ? std::string_view{offered->hostname} : m.host_name;
    const reply r{reply_kind::offer, offered->address, wire::ipv4_address{}, clamp_seconds(pool_.config().lease_time),
                  host, {}};
    if (send(m, r, emit)) notify(lease_event_kind::offered, offered->address, host);
}

template <class S, class C>
template <class Emit>
void basic_server<S, C>::on_request(const wire::dhcp::repr& m, sys_seconds now, Emit& emit) {
    if (m.server_id) { // SELECTING
        if (*m.server_id != config_.server_address) {
            // The client took another server's offer: free what we held for it, unless it is a lease.
            if (const auto held = pool_.find(scratch_.client); held && !held->bound) {
                (void)pool_.release(scratch_.client, held->address, now);
            }
            ++stats_.ignored_not_for_us;
            return;
        }
        const auto address = m.requested_ip ? *m.requested_ip : m.ciaddr;
        if (address.is_unspecified()) {
            ++stats_.dropped_malformed;
            return;
        }
        return confirm(m, address, now, emit);
    }
    if (!m.ciaddr.is_unspecified()) return confirm(m, m.ciaddr, now, emit); // RENEWING / REBINDING
    if (m.requested_ip) return confirm(m, *m.requested_ip, now, emit);       // INIT-REBOOT
    ++stats_.dropped_malformed; // a REQUEST naming no address at all
}

template <class S, class C>
template <class Emit>
void basic_server<S, C>::confirm(const wire::dhcp::repr& m, wire::ipv4_address address, sys_seconds now, Emit& emit) {
    if (!pool_.config().subnet.contains(address)) return nak(m, address, "requested address is not on this network", emit);
    const auto held = pool_.find(scratch_.client);
    if (held && held->bound && held->address != address) {
        return nak(m, address, "client holds a lease on another address", emit);
    }
    if (const auto fixed = reserved_address(scratch_.client); fixed && *fixed != address) {
        return nak(m, address, "client has another address reserved", emit);
    }
    if (scratch_.hostname.empty() && held) scratch_.hostname = held->hostname; // a renewal without 12 keeps it
    const auto granted = pool_.commit(scratch_, address, now);
    if (!granted) {
        if (client_error(granted.error())) return nak(m, address, nak_reason(granted.error()), emit);
        ++stats_.store_errors;
        return;
    }
    const std::string_view host = m.host_name.empty() ? std::string_view{granted->hostname} : m.host_name;
    const reply r{reply_kind::ack, address, m.ciaddr, clamp_seconds(granted->expiry - now), host, {}};
    if (send(m, r, emit)) notify(lease_event_kind::acknowledged, address, granted->hostname);
}

template <class S, class C>
template <class Emit>
void basic_server<S, C>::nak(const wire::dhcp::repr& m, wire::ipv4_address address, std::string_view why, Emit& emit) {
    const reply r{reply_kind::nak, wire::ipv4_address{}, wire::ipv4_address{}, 0, {}, why};
    if (send(m, r, emit)) notify(lease_event_kind::nacked, address, m.host_name, why);
}

template <class S, class C>
void basic_server<S, C>::on_decline(const wire::dhcp::repr& m, const wire::dhcp::packet<wire::const_bytes>& raw,
                                    sys_seconds now) {
    if (m.server_id && *m.server_id != config_.server_address) {
        ++stats_.ignored_not_for_us;
        return;
    }
    if (!m.requested_ip) { // RFC 2131 table 5: option 50 MUST name the declined address
        ++stats_.dropped_malformed;
        return;
    }
    if (auto error = pool_.decline(scratch_.client, *m.requested_ip, now)) {
        if (error == lease_errc::no_lease) ++stats_.ignored_no_lease;
        else ++stats_.store_errors;
        return;
    }
    std::string_view message;
    if (const auto found = raw.find_option(wire::dhcp::option_code::message); found && *found) {
        message = wire::dhcp::detail::as_text((*found)->data);
    }
    notify(lease_event_kind::declined, *m.requested_ip, m.host_name, message);
}

template <class S, class C>
void basic_server<S, C>::on_release(const wire::dhcp::repr& m, sys_seconds now) {
    if (m.server_id && *m.server_id != config_.server_address) {
        ++stats_.ignored_not_for_us;
        return;
    }
    if (m.ciaddr.is_unspecified()) { // RFC 2131 table 5: ciaddr is the address released
        ++stats_.dropped_malformed;
        return;
    }
    const auto held = pool_.find(m.ciaddr);
    if (auto error = pool_.release(scratch_.client, m.ciaddr, now)) {
        if (error == lease_errc::no_lease) ++stats_.ignored_no_lease;
        else ++stats_.store_errors;
        return;
    }
    notify(lease_event_kind::released, m.ciaddr, held ? std::string_view{held->hostname} : m.host_name);
}

template <class S, class C>
template <class Emit>
void basic_server<S, C>::on_inform(const wire::dhcp::repr& m, Emit& emit) {
    // The client configured its address itself (ciaddr); it only wants the other parameters.
    if (!m.ciaddr.is_unspecified() && !pool_.config().subnet.contains(m.ciaddr)) {
        ++stats_.ignored_not_for_us;
        return;
    }
    const reply r{reply_kind::inform, wire::ipv4_address{}, m.ciaddr, 0, m.host_name, {}};
    if (send(m, r, emit)) notify(lease_event_kind::informed, m.ciaddr, m.host_name);
}

template <class S, class C>
std::optional<std::size_t> basic_server<S, C>::option_size(std::uint8_t code, const reply& r) const noexcept {
    namespace oc = wire::dhcp::option_code;
    switch (code) {
    case oc::host_name:
        if (r.host_name.empty() || r.host_name.size() > wire::dhcp::max_option_len) return std::nullopt;
        return 2 + r.host_name.size();
    case oc::lease_time:
    case oc::renewal_time:
    case oc::rebinding_time:
        if (r.kind != reply_kind::offer && r.kind != reply_kind::ack) return std::nullopt;
        return 2 + 4;
    default:
        if (const auto* o = find_stored(code)) return 2 + std::size_t{o->length};
        return std::nullopt; // not served (or not configured)
    }
}

template <class S, class C>
std::error_code basic_server<S, C>::write_option(wire::dhcp::option_writer& w, std::uint8_t code,
                                                 const wire::dhcp::repr& m, const reply& r) const noexcept {
    namespace oc = wire::dhcp::option_code;
    const std::uint64_t lease = r.lease_seconds;
    switch (code) {
    case oc::host_name: return w.host_name(r.host_name);
    case oc::lease_time: return w.lease_time(r.lease_seconds);
    case oc::renewal_time: return w.renewal_time(static_cast<std::uint32_t>(lease / 2));          // T1 = 1/2
    case oc::rebinding_time: return w.rebinding_time(static_cast<std::uint32_t>(lease * 7 / 8)); // T2 = 7/8
    case oc::message: return w.raw(code, wire::as_bytes(r.message));
    case oc::client_id: return w.client_id(m.client_id);
    default:
        if (const auto* o = find_stored(code)) return w.raw(code, stored_value(*o));
        return errc::bad_field;
    }
}

template <class S, class C>
template <class Emit>
bool basic_server<S, C>::send(const wire::dhcp::repr& m, const reply& r, Emit& emit) {
    namespace ethernet = wire::ethernet;
    namespace ipv4 = wire::ipv4;
    namespace udp = wire::udp;
    namespace dhcp = wire::dhcp;
    namespace oc = dhcp::option_code;
    constexpr std::size_t udp_at = ethernet::header_len + ipv4::header_len;
    constexpr std::size_t dhcp_at = udp_at + udp::header_len;

    const wire::mutable_bytes frame{buffer_};
    const wire::mutable_bytes message = frame.subspan(dhcp_at);

    // RFC 2131 table 3: xid, flags, giaddr and chaddr copied; ciaddr only in an ACK.
    dhcp::repr header;
    header.op = dhcp::boot_reply;
    header.htype = m.htype;
    header.hlen = m.hlen;
    header.xid = m.xid;
    header.flags = m.flags;
    header.ciaddr = r.kind == reply_kind::ack || r.kind == reply_kind::inform ? r.ciaddr : wire::ipv4_address{};
    header.yiaddr = r.yiaddr;
    header.giaddr = m.giaddr;
    header.chaddr = m.chaddr;
    const auto fail = [&] {
        ++stats_.reply_errors;
        return false;
    };
    if (header.emit_header(message)) return fail();

    const std::size_t limit = std::min(dhcp::max_reply_len(m.max_message_size), link_limit_);
    dhcp::option_writer w{message, limit};
    w.message_type(r.kind == reply_kind::offer ? dhcp::message_type::offer
                   : r.kind == reply_kind::nak ? dhcp::message_type::nak
                                               : dhcp::message_type::ack);
    w.server_id(config_.server_address);
    if (w.error()) return fail();

    // Plan: the requested options in the client's order, then what every client needs, then 61.
    std::array<planned_option, max_planned> plan{};
    std::size_t count = 0;
    std::bitset<256> planned;
    planned.set(oc::message_type);
    planned.set(oc::server_id);
    const auto add = [&](std::uint8_t code, std::uint16_t rank, std::optional<std::size_t> size) {
        if (!size || planned.test(code) || count == plan.size()) return;
        planned.set(code);
        plan[count++] = planned_option{code, static_cast<std::uint16_t>(*size), rank, false};
    };
    const auto rank_of = [](std::uint8_t code, std::size_t position) -> std::uint16_t {
        switch (code) {
        case oc::lease_time: return 0;
        case oc::subnet_mask:
        case oc::router:
        case oc::dns_servers:
        case oc::renewal_time:
        case oc::rebinding_time: return 1;
        default: return static_cast<std::uint16_t>(2 + position);
        }
    };
    if (r.kind == reply_kind::nak) {
        if (!r.message.empty() && r.message.size() <= dhcp::max_option_len) add(oc::message, 0, 2 + r.message.size());
    } else {
        const auto requested = m.parameter_request_list;
        for (std::size_t i = 0; i < requested.size(); ++i) {
            const auto code = static_cast<std::uint8_t>(requested[i]);
            add(code, rank_of(code, i), option_size(code, r));
        }
        for (const std::uint8_t code : {oc::lease_time, oc::renewal_time, oc::rebinding_time, oc::subnet_mask,
                                        oc::router, oc::dns_servers}) {
            add(code, rank_of(code, 0), option_size(code, r));
        }
    }
    if (!m.client_id.empty()) add(oc::client_id, 0, 2 + m.client_id.size()); // RFC 6842

    // Keep the most important options that fit, whole; the rest are left out.
    std::array<std::size_t, max_planned> order{};
    for (std::size_t i = 0; i < count; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count),
                     [&](std::size_t a, std::size_t b) { return plan[a].rank < plan[b].rank; });
    std::size_t budget = w.remaining();
    for (std::size_t i = 0; i < count; ++i) {
        auto& p = plan[order[i]];
        if (p.size <= budget) {
            p.keep = true;
            budget -= p.size;
        }
    }
    for (std::size_t i = 0; i < count; ++i) {
        if (plan[i].keep && write_option(w, plan[i].code, m, r)) return fail();
    }
    const auto length = w.finish();
    if (!length) return fail();

    // Where it goes (RFC 2131 §4.1, no relay).
    wire::ipv4_address to_ip = wire::ipv4_address::broadcast();
    wire::mac_address to_mac = wire::mac_address::broadcast();
    if (r.kind != reply_kind::nak) {
        if (!m.ciaddr.is_unspecified()) {
            to_ip = m.ciaddr;
            to_mac = scratch_.client.mac;
        } else if (!m.broadcast() && !r.yiaddr.is_unspecified()) {
            to_ip = r.yiaddr;
            to_mac = scratch_.client.mac;
        }
    }

    const std::size_t datagram_len = udp::header_len + *length;
    if (udp::repr{dhcp::server_port, dhcp::client_port, *length}.emit(frame.subspan(udp_at), config_.server_address,
                                                                      to_ip)) {
        return fail();
    }
    ipv4::repr ip;
    ip.source = config_.server_address;
    ip.destination = to_ip;
    ip.protocol = ipv4::protocol::udp;
    ip.ttl = ipv4::default_ttl;
    ip.payload_len = datagram_len;
    ip.identification = identification_++;
    if (ip.emit(frame.subspan(ethernet::header_len))) return fail();
    if (ethernet::repr{config_.server_mac, to_mac, ethernet::ethertype::ipv4, std::nullopt}.emit(frame)) return fail();

    switch (r.kind) {
    case reply_kind::offer: ++stats_.offers; break;
    case reply_kind::nak: ++stats_.naks; break;
    default: ++stats_.acks; break;
    }
    emit(wire::const_bytes{frame.first(udp_at + datagram_len)});
    return true;
}

// The pool's refusals that are about the client's request, and so deserve a NAK; anything else
// (an I/O error, a store that did not load) is the server's trouble.
template <class S, class C>
bool basic_server<S, C>::client_error(std::error_code e) noexcept {
    if (e.category() != lease_error_category()) return false;
    switch (static_cast<lease_errc>(e.value())) {
    case lease_errc::pool_exhausted:
    case lease_errc::not_in_range:
    case lease_errc::reserved_for_other:
    case lease_errc::excluded_address:
    case lease_errc::address_in_use:
    case lease_errc::address_quarantined:
    case lease_errc::no_lease: return true;
    default: return false;
    }
}

// Static text for option 56 (no allocation on the NAK path).
template <class S, class C>
std::string_view basic_server<S, C>::nak_reason(std::error_code e) noexcept {
    if (e == lease_errc::not_in_range) return "requested address is outside the DHCP range";
    if (e == lease_errc::reserved_for_other) return "requested address is reserved for another client";
    if (e == lease_errc::excluded_address) return "requested address is excluded";
    if (e == lease_errc::address_in_use) return "requested address is in use";
    if (e == lease_errc::address_quarantined) return "requested address was declined recently";
    if (e == lease_errc::no_lease) return "no lease for this client";
    return "address not available";
}

} // namespace ankanet::dhcp
