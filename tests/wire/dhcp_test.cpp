#include <ankanet/wire/dhcp.hpp>

#include "../support/dhcp_captures.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace dhcp = ankanet::wire::dhcp;
using ankanet::errc;
using ankanet::wire::const_bytes;
using ankanet::wire::ipv4_address;
using ankanet::wire::ipv4_prefix;
using ankanet::wire::mac_address;
using ankanet::wire::mutable_bytes;
using bytes = std::vector<std::byte>;

// The golden packets: real client and server messages (see the header for how they were made).
using namespace ankanet::test::dhcp_captures;

bytes make(std::initializer_list<int> values) {
    bytes out;
    for (int v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

bytes of(const_bytes span) { return bytes(span.begin(), span.end()); }
bytes of(std::string_view text) { return of(ankanet::wire::as_bytes(text)); }

std::string_view text(const_bytes span) { return {reinterpret_cast<const char*>(span.data()), span.size()}; }

std::uint8_t at(const bytes& message, std::size_t offset) { return static_cast<std::uint8_t>(message.at(offset)); }

void put(bytes& message, std::size_t offset, const std::vector<int>& values) {
    for (int v : values) message.at(offset++) = static_cast<std::byte>(v);
}

constexpr mac_address client_mac{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}};
constexpr ipv4_address gateway{192, 168, 64, 1};
constexpr ipv4_address leased{192, 168, 64, 107};

/// A BOOTREQUEST from client_mac (xid 0x12345678) with `options` right after the cookie, zero
/// padded to `size` bytes.
bytes request_with(const std::vector<int>& options, std::size_t size = dhcp::bootp_min_len) {
    bytes message(std::max(size, dhcp::options_offset + options.size()));
    put(message, 0, {1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78});
    put(message, dhcp::field::chaddr, {0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
    put(message, dhcp::field::cookie, {99, 130, 83, 99});
    put(message, dhcp::options_offset, options);
    return message;
}

dhcp::packet<const_bytes> view(const bytes& message) { return dhcp::packet<const_bytes>{message}; }

/// The option codes of every area, in iteration order; REQUIREs that iteration ends cleanly.
std::vector<int> codes(const dhcp::packet<const_bytes>& message) {
    std::vector<int> out;
    auto it = message.options().begin();
    for (; it != std::default_sentinel; ++it) out.push_back(it->code);
    REQUIRE_FALSE(it.error());
    return out;
}

/// The value of the single option `code`, which must be present.
bytes option_value(const dhcp::packet<const_bytes>& message, std::uint8_t code) {
    const auto found = message.find_option(code);
    REQUIRE(found);
    REQUIRE(found->has_value());
    return of((*found)->data);
}

/// Where the end option of the options field is, found with a walk independent of the header's.
std::size_t end_offset(const bytes& message) {
    std::size_t pos = dhcp::options_offset;
    while (at(message, pos) != 255) pos += at(message, pos) == 0 ? 1u : 2u + at(message, pos + 1);
    return pos;
}

/// The offsets in the options field where an option starts.
std::set<std::size_t> option_starts(const bytes& message) {
    std::set<std::size_t> starts;
    std::size_t pos = dhcp::options_offset;
    while (at(message, pos) != 255) {
        starts.insert(pos);
        pos += at(message, pos) == 0 ? 1u : 2u + at(message, pos + 1);
    }
    return starts;
}

bytes emit(const dhcp::repr& r) {
    bytes out(r.buffer_len());
    REQUIRE_FALSE(r.emit(out));
    return out;
}

bool all_zero(const_bytes span) {
    return std::all_of(span.begin(), span.end(), [](std::byte b) { return b == std::byte{0}; });
}

struct golden {
    const char* name;
    std::string_view hex;
    dhcp::message_type type;
};

const std::array<golden, 12> goldens{{
    {"udhcpc DISCOVER", udhcpc_discover, dhcp::message_type::discover},
    {"dnsmasq OFFER to udhcpc", udhcpc_offer, dhcp::message_type::offer},
    {"udhcpc REQUEST", udhcpc_request, dhcp::message_type::request},
    {"dnsmasq ACK to udhcpc", udhcpc_ack, dhcp::message_type::ack},
    {"dhclient DISCOVER", dhclient_discover, dhcp::message_type::discover},
    {"dnsmasq OFFER to dhclient", dhclient_offer, dhcp::message_type::offer},
    {"dhclient REQUEST", dhclient_request, dhcp::message_type::request},
    {"dnsmasq ACK to dhclient", dhclient_ack, dhcp::message_type::ack},
    {"dhcpcd DISCOVER", dhcpcd_discover, dhcp::message_type::discover},
    {"dnsmasq OFFER to dhcpcd", dhcpcd_offer, dhcp::message_type::offer},
    {"dhcpcd REQUEST", dhcpcd_request, dhcp::message_type::request},
    {"dnsmasq ACK to dhcpcd", dhcpcd_ack, dhcp::message_type::ack},
}};

/// The checks every client message from the golden set shares: header of a fresh BOOTREQUEST from
/// client_mac, empty sname/file, the DHCP cookie.
void check_client_header(const dhcp::packet<const_bytes>& m, std::uint32_t xid, std::uint16_t secs) {
    CHECK(m.op() == dhcp::boot_request);
    CHECK(m.htype() == dhcp::htype_ethernet);
    CHECK(m.hlen() == 6);
    CHECK(m.hops() == 0);
    CHECK(m.xid() == xid);
    CHECK(m.secs() == secs);
    CHECK(m.flags() == 0);
    CHECK_FALSE(m.broadcast());
    CHECK(m.ciaddr() == ipv4_address::any());
    CHECK(m.yiaddr() == ipv4_address::any());
    CHECK(m.siaddr() == ipv4_address::any());
    CHECK(m.giaddr() == ipv4_address::any());
    CHECK(m.client_mac() == client_mac);
    CHECK(of(m.hardware_address()) == of(client_mac.bytes()));
    CHECK(all_zero(m.chaddr().subspan(6)));
    CHECK(all_zero(m.sname()));
    CHECK(all_zero(m.file()));
    CHECK(m.cookie() == dhcp::magic_cookie);
}

/// dnsmasq's replies: BOOTREPLY unicast to the offered address from 192.168.64.1.
void check_reply_header(const dhcp::packet<const_bytes>& m, std::uint32_t xid, std::uint16_t secs) {
    CHECK(m.op() == dhcp::boot_reply);
    CHECK(m.htype() == dhcp::htype_ethernet);
    CHECK(m.hlen() == 6);
    CHECK(m.hops() == 0);
    CHECK(m.xid() == xid);
    CHECK(m.secs() == secs);
    CHECK(m.flags() == 0);
    CHECK(m.ciaddr() == ipv4_address::any());
    CHECK(m.yiaddr() == leased);
    CHECK(m.siaddr() == gateway);
    CHECK(m.giaddr() == ipv4_address::any());
    CHECK(m.client_mac() == client_mac);
    CHECK(all_zero(m.sname()));
    CHECK(all_zero(m.file()));
    CHECK(m.cookie() == dhcp::magic_cookie);
}

/// The options dnsmasq sent in every reply, as configured above.
void check_dnsmasq_options(const dhcp::packet<const_bytes>& m) {
    CHECK(m.server_id().value() == gateway);
    CHECK(m.lease_time().value() == 43200u);
    CHECK(option_value(m, dhcp::option_code::renewal_time) == make({0x00, 0x00, 0x54, 0x60}));   // 21600
    CHECK(option_value(m, dhcp::option_code::rebinding_time) == make({0x00, 0x00, 0x93, 0xa8})); // 37800
    CHECK(option_value(m, dhcp::option_code::subnet_mask) == make({255, 255, 255, 0}));
    CHECK(option_value(m, dhcp::option_code::broadcast_address) == make({192, 168, 64, 255}));
    CHECK(option_value(m, dhcp::option_code::domain_name) == of("vm.test"));
    CHECK(option_value(m, dhcp::option_code::dns_servers) == make({192, 168, 64, 1}));
    CHECK(option_value(m, dhcp::option_code::router) == make({192, 168, 64, 1}));
    // A server's reply carries none of the client's options.
    CHECK_FALSE(m.requested_ip().value());
    CHECK_FALSE(m.client_id().value());
    CHECK_FALSE(m.parameter_request_list().value());
    CHECK_FALSE(m.max_message_size().value());
    CHECK_FALSE(m.vendor_class().value());
    CHECK_FALSE(m.overload().value());
}

} // namespace

// --- decoding real packets --------------------------------------------------------------------

TEST_CASE("udhcpc DISCOVER and REQUEST decode field by field") {
    const bytes discover = hex(udhcpc_discover);
    REQUIRE(discover.size() == 300);
    const auto d = dhcp::packet<const_bytes>::checked(discover);
    REQUIRE(d);
    check_client_header(*d, 0xa1cc8847, 2);
    CHECK(codes(*d) == std::vector<int>{53, 57, 55, 12, 60, 61});
    CHECK(d->message_type().value() == dhcp::message_type::discover);
    CHECK(d->max_message_size().value() == 576);
    CHECK(of(d->parameter_request_list().value().value()) == make({1, 3, 6, 12, 15, 28, 42}));
    CHECK(d->host_name().value() == "guest-udhcpc");
    CHECK(d->vendor_class().value() == "udhcp 1.35.0");
    CHECK(of(d->client_id().value().value()) == make({1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    // Absent is an empty optional, not an error.
    REQUIRE(d->requested_ip());
    CHECK_FALSE(d->requested_ip()->has_value());
    CHECK_FALSE(d->server_id().value());
    CHECK_FALSE(d->lease_time().value());
    CHECK_FALSE(d->overload().value());
    CHECK(end_offset(discover) == 293);

    const bytes request = hex(udhcpc_request);
    REQUIRE(request.size() == 306); // not padded: udhcpc pads only up to 300
    const auto r = dhcp::packet<const_bytes>::checked(request);
    REQUIRE(r);
    check_client_header(*r, 0xa1cc8847, 3);
    CHECK(codes(*r) == std::vector<int>{53, 50, 54, 57, 55, 12, 60, 61});
    CHECK(r->message_type().value() == dhcp::message_type::request);
    CHECK(r->requested_ip().value() == leased);
    CHECK(r->server_id().value() == gateway);
    CHECK(r->host_name().value() == "guest-udhcpc");

    const auto rr = dhcp::repr::parse(request);
    REQUIRE(rr);
    CHECK(rr->op == dhcp::boot_request);
    CHECK(rr->xid == 0xa1cc8847);
    CHECK(rr->secs == 3);
    CHECK(rr->client_mac() == client_mac);
    CHECK(rr->message_type == dhcp::message_type::request);
    CHECK(rr->requested_ip == leased);
    CHECK(rr->server_id == gateway);
    CHECK(of(rr->client_id) == make({1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    CHECK(rr->host_name == "guest-udhcpc");
    CHECK(of(rr->parameter_request_list) == make({1, 3, 6, 12, 15, 28, 42}));
    CHECK(rr->max_message_size == 576);
    CHECK(rr->lease_time == std::nullopt);
    CHECK(rr->vendor_class == "udhcp 1.35.0");
    CHECK(rr->sname.size() == dhcp::sname_len);
    CHECK(rr->file.size() == dhcp::file_len);
    CHECK(rr->file_options.empty());
    CHECK(rr->sname_options.empty());
    // The spans point into the packet, not at copies.
    CHECK(rr->host_name.data() == reinterpret_cast<const char*>(request.data()) + 270);
}

TEST_CASE("ISC dhclient DISCOVER and REQUEST decode field by field") {
    const bytes discover = hex(dhclient_discover);
    const auto d = dhcp::packet<const_bytes>::checked(discover);
    REQUIRE(d);
    check_client_header(*d, 0x971f9277, 0);
    CHECK(codes(*d) == std::vector<int>{53, 12, 55});
    CHECK(d->message_type().value() == dhcp::message_type::discover);
    CHECK(d->host_name().value() == "vm");
    CHECK(of(d->parameter_request_list().value().value()) ==
          make({1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42}));
    CHECK_FALSE(d->client_id().value()); // dhclient identifies itself by chaddr only
    CHECK_FALSE(d->max_message_size().value());
    CHECK(end_offset(discover) == 262);

    const bytes request = hex(dhclient_request);
    const auto r = dhcp::packet<const_bytes>::checked(request);
    REQUIRE(r);
    check_client_header(*r, 0x971f9277, 0);
    CHECK(codes(*r) == std::vector<int>{53, 54, 50, 12, 55});
    CHECK(r->message_type().value() == dhcp::message_type::request);
    CHECK(r->server_id().value() == gateway);
    CHECK(r->requested_ip().value() == leased);
}

TEST_CASE("dhcpcd DISCOVER and REQUEST decode field by field") {
    const bytes discover = hex(dhcpcd_discover);
    const auto d = dhcp::packet<const_bytes>::checked(discover);
    REQUIRE(d);
    check_client_header(*d, 0x316c9e06, 0);
    CHECK(codes(*d) == std::vector<int>{53, 55, 57, 61, 80, 116, 145});
    CHECK(d->message_type().value() == dhcp::message_type::discover);
    CHECK(of(d->parameter_request_list().value().value()) ==
          make({1, 121, 3, 6, 12, 15, 26, 28, 33, 51, 54, 58, 59, 119}));
    CHECK(d->max_message_size().value() == 1472);
    CHECK(dhcp::max_reply_len(*d->max_message_size().value()) == 1444);
    // RFC 4361 client identifier: type 255, IAID 00:12:34:56, DUID-LLT of the MAC.
    CHECK(of(d->client_id().value().value()) == make({0xff, 0x00, 0x12, 0x34, 0x56, 0x00, 0x01, 0x00, 0x01, 0x32,
                                                      0x9c, 0xfc, 0x84, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
    // Rapid commit (80) has length zero; the iterator shows it with an empty value.
    CHECK(option_value(*d, dhcp::option_code::rapid_commit).empty());
    CHECK(option_value(*d, 116) == make({1}));
    CHECK(option_value(*d, 145) == make({1}));
    CHECK_FALSE(d->host_name().value());

    const bytes request = hex(dhcpcd_request);
    REQUIRE(request.size() == 300);
    CHECK(end_offset(request) == 299); // the end option is the last byte: no padding at all
    const auto r = dhcp::packet<const_bytes>::checked(request);
    REQUIRE(r);
    check_client_header(*r, 0x316c9e06, 3);
    CHECK(codes(*r) == std::vector<int>{50, 53, 54, 55, 57, 61, 145});
    CHECK(r->message_type().value() == dhcp::message_type::request);
    CHECK(r->requested_ip().value() == leased);
    CHECK(r->server_id().value() == gateway);
}

TEST_CASE("dnsmasq OFFER and ACK decode field by field") {
    SECTION("to udhcpc, which asked for no domain search, routes or MTU") {
        const bytes offer = hex(udhcpc_offer);
        const auto o = dhcp::packet<const_bytes>::checked(offer);
        REQUIRE(o);
        check_reply_header(*o, 0xa1cc8847, 2);
        CHECK(codes(*o) == std::vector<int>{53, 54, 51, 58, 59, 1, 28, 15, 6, 3});
        CHECK(o->message_type().value() == dhcp::message_type::offer);
        check_dnsmasq_options(*o);
        CHECK_FALSE(o->host_name().value());

        const bytes ack = hex(udhcpc_ack);
        const auto a = dhcp::packet<const_bytes>::checked(ack);
        REQUIRE(a);
        check_reply_header(*a, 0xa1cc8847, 3);
        CHECK(codes(*a) == std::vector<int>{53, 54, 51, 58, 59, 1, 28, 15, 12, 6, 3});
        CHECK(a->message_type().value() == dhcp::message_type::ack);
        check_dnsmasq_options(*a);
        CHECK(a->host_name().value() == "guest-udhcpc");
    }
    SECTION("to dhclient and dhcpcd, with MTU, classless routes and domain search") {
        for (const auto* name : {"dhclient", "dhcpcd"}) {
            const bool isc = std::string_view{name} == "dhclient";
            const bytes offer = hex(isc ? dhclient_offer : dhcpcd_offer);
            const bytes ack = hex(isc ? dhclient_ack : dhcpcd_ack);
            const std::uint32_t xid = isc ? 0x971f9277 : 0x316c9e06;
            for (const bytes* message : {&offer, &ack}) {
                INFO(name << (message == &offer ? " OFFER" : " ACK"));
                const auto m = dhcp::packet<const_bytes>::checked(*message);
                REQUIRE(m);
                check_reply_header(*m, xid, static_cast<std::uint16_t>(message == &offer || isc ? 0 : 3));
                check_dnsmasq_options(*m);
                CHECK(m->message_type().value() ==
                      (message == &offer ? dhcp::message_type::offer : dhcp::message_type::ack));
                CHECK(option_value(*m, dhcp::option_code::interface_mtu) == make({0x05, 0xdc}));
                CHECK(option_value(*m, dhcp::option_code::classless_static_routes) ==
                      make({8, 10, 192, 168, 64, 1}));
                CHECK(option_value(*m, dhcp::option_code::domain_search) ==
                      make({2, 'v', 'm', 4, 't', 'e', 's', 't', 0}));
                // dnsmasq echoes dhclient's host name in the ACK only; dhcpcd sent none.
                const bool echoes = isc && message == &ack;
                CHECK(m->host_name().value() == (echoes ? std::optional<std::string_view>{"vm"} : std::nullopt));
                CHECK(codes(*m).size() == (echoes ? 14u : 13u));
            }
        }
    }
}

// --- round trips ------------------------------------------------------------------------------

namespace {
// A repr points into the message it was parsed from: parsing a temporary container does not compile.
template <class T>
concept parses = requires(T&& message) { dhcp::repr::parse(std::forward<T>(message)); };
static_assert(!parses<bytes>);
static_assert(parses<bytes&>);
static_assert(parses<const bytes&>);
static_assert(parses<const_bytes>);
static_assert(parses<dhcp::packet<const_bytes>>);
} // namespace

TEST_CASE("every golden packet round-trips through repr byte for byte") {
    for (const auto& g : goldens) {
        INFO(g.name);
        const bytes original = hex(g.hex);
        const auto r = dhcp::repr::parse(original);
        REQUIRE(r);
        CHECK(r->message_type == g.type);
        CHECK(r->buffer_len() == original.size());
        const bytes emitted = emit(*r);
        CHECK(emitted == original);

        const auto again = dhcp::repr::parse(emitted);
        REQUIRE(again);
        CHECK(*again == *r);

        // One byte short of buffer_len() is refused, and so is a buffer shorter than the header.
        bytes small(r->buffer_len() - 1);
        CHECK(r->emit(small) == errc::buffer_too_small);
        bytes tiny(100);
        CHECK(r->emit(tiny) == errc::buffer_too_small);
    }
}

TEST_CASE("dnsmasq's replies rebuilt with option_writer byte for byte") {
    // The header from the reply's own fields; the options written one by one, as dnsmasq did.
    const auto rebuild = [](const bytes& original, bool mtu_routes_search, std::string_view echoed_host) {
        const auto parsed = dhcp::repr::parse(original);
        REQUIRE(parsed);
        dhcp::repr header;
        header.op = dhcp::boot_reply;
        header.xid = parsed->xid;
        header.secs = parsed->secs;
        header.yiaddr = leased;
        header.siaddr = gateway;
        std::copy(client_mac.octets().begin(), client_mac.octets().end(), header.chaddr.begin());

        bytes out(1500, std::byte{0xee}); // anything the writer leaves alone shows up
        REQUIRE_FALSE(header.emit_header(out));
        dhcp::option_writer w{out};
        CHECK_FALSE(w.message_type(*parsed->message_type));
        CHECK_FALSE(w.server_id(gateway));
        CHECK_FALSE(w.lease_time(43200));
        CHECK_FALSE(w.renewal_time(21600));
        CHECK_FALSE(w.rebinding_time(37800));
        CHECK_FALSE(w.subnet_mask(ipv4_address{255, 255, 255, 0}));
        CHECK_FALSE(w.broadcast_address(ipv4_address{192, 168, 64, 255}));
        CHECK_FALSE(w.domain_name("vm.test"));
        if (!echoed_host.empty()) CHECK_FALSE(w.host_name(echoed_host));
        if (mtu_routes_search) {
            CHECK_FALSE(w.interface_mtu(1500));
            const std::array routes{dhcp::classless_route{ipv4_prefix{ipv4_address{10, 0, 0, 0}, 8}, gateway}};
            CHECK_FALSE(w.classless_static_routes(routes));
            const std::array<std::string_view, 1> search{"vm.test"};
            CHECK_FALSE(w.domain_search(search));
        }
        const std::array servers{gateway};
        CHECK_FALSE(w.dns_servers(servers));
        CHECK_FALSE(w.router(gateway));
        const auto len = w.finish();
        REQUIRE(len);
        REQUIRE(*len == original.size());
        CHECK(bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*len)) == original);
    };
    SECTION("udhcpc") {
        rebuild(hex(udhcpc_offer), false, {});
        rebuild(hex(udhcpc_ack), false, "guest-udhcpc");
    }
    SECTION("dhclient") {
        rebuild(hex(dhclient_offer), true, {});
        rebuild(hex(dhclient_ack), true, "vm");
    }
    SECTION("dhcpcd") {
        rebuild(hex(dhcpcd_offer), true, {});
        rebuild(hex(dhcpcd_ack), true, {});
    }
}

// --- refusing malformed messages --------------------------------------------------------------

TEST_CASE("every truncation of a golden packet is refused unless it ends between two options") {
    // A message cut mid-header is truncated and one cut inside an option is bad_option. One cut
    // exactly between two options, or inside the padding after the end option, is a well-formed
    // message without end option, which is accepted by design (see the header's theory of operation).
    for (const auto& g : goldens) {
        INFO(g.name);
        const bytes original = hex(g.hex);
        const auto full = dhcp::repr::parse(original);
        REQUIRE(full);
        const std::set<std::size_t> starts = option_starts(original);
        const std::size_t end = end_offset(original);
        for (std::size_t n = 0; n < original.size(); ++n) {
            INFO("length " << n);
            const bytes cut(original.begin(), original.begin() + static_cast<std::ptrdiff_t>(n));
            const auto r = dhcp::repr::parse(cut);
            const auto checked = dhcp::packet<const_bytes>::checked(cut);
            if (n < dhcp::min_len) {
                CHECK(r.error() == errc::truncated);
                CHECK(checked.error() == errc::truncated);
            } else if (n > end) {
                REQUIRE(r); // only padding was lost
                CHECK(*r == *full);
            } else if (n == end || n == dhcp::options_offset || starts.count(n) != 0) {
                REQUIRE(r);
                CHECK(r->buffer_len() == std::max<std::size_t>(n + 1, dhcp::bootp_min_len));
            } else {
                CHECK(r.error() == errc::bad_option);
                CHECK(checked.error() == errc::bad_option);
                CHECK(view(cut).message_type().error() == errc::bad_option);
            }
        }
    }
}

TEST_CASE("header checks: cookie, op, hlen") {
    const bytes good = hex(udhcpc_discover);
    SECTION("a wrong cookie, in any byte, is bad_field (plain BOOTP is not handled)") {
        for (std::size_t i = 0; i < dhcp::cookie_len; ++i) {
            bytes m = good;
            m[dhcp::field::cookie + i] ^= std::byte{0x01};
            CHECK(view(m).check_len() == errc::bad_field);
            CHECK(dhcp::repr::parse(m).error() == errc::bad_field);
        }
    }
    SECTION("op must be BOOTREQUEST or BOOTREPLY") {
        for (int op : {0, 3, 255}) {
            bytes m = good;
            put(m, dhcp::field::op, {op});
            CHECK(view(m).check_len() == errc::bad_field);
        }
        bytes reply = good;
        put(reply, dhcp::field::op, {2});
        CHECK_FALSE(view(reply).check_len());
    }
    SECTION("hlen above 16 is refused; 16 is the whole chaddr") {
        for (int hlen : {17, 100, 255}) {
            bytes m = good;
            put(m, dhcp::field::hlen, {hlen});
            CHECK(view(m).check_len() == errc::bad_length);
            CHECK(dhcp::repr::parse(m).error() == errc::bad_length);
        }
        bytes m = good;
        put(m, dhcp::field::hlen, {16});
        REQUIRE_FALSE(view(m).check_len());
        CHECK(view(m).hardware_address().size() == 16);
        CHECK(view(m).client_mac() == std::nullopt); // not an Ethernet address any more
    }
    SECTION("a header alone, with no options at all, is a message") {
        const bytes bare(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(dhcp::min_len));
        const auto r = dhcp::repr::parse(bare);
        REQUIRE(r);
        CHECK(r->message_type == std::nullopt);
        CHECK(codes(view(bare)).empty());
    }
}

TEST_CASE("option lengths that lie are bad_option") {
    SECTION("the last option of each golden packet claiming one byte past the end of the message") {
        for (const auto& g : goldens) {
            INFO(g.name);
            bytes m = hex(g.hex);
            const std::size_t last = *option_starts(m).rbegin();
            const std::size_t room = m.size() - last - 2;
            REQUIRE(room < 255);
            put(m, last + 1, {static_cast<int>(room + 1)});
            CHECK(view(m).check_options() == errc::bad_option);
            CHECK(dhcp::repr::parse(m).error() == errc::bad_option);
            CHECK_FALSE(dhcp::packet<const_bytes>::checked(m));
            // A lying option makes every typed accessor fail, not just its own.
            CHECK(view(m).message_type().error() == errc::bad_option);
            // Exactly filling the message instead is well-formed (no end option left).
            put(m, last + 1, {static_cast<int>(room)});
            CHECK_FALSE(view(m).check_options());
        }
    }
    SECTION("an option code in the last byte, with no room for its length") {
        const bytes m = request_with({53, 1, 1, 12}, dhcp::options_offset + 4);
        CHECK(view(m).check_options() == errc::bad_option);
        CHECK(dhcp::repr::parse(m).error() == errc::bad_option);
    }
    SECTION("length 255 from early in the options field") {
        const bytes m = request_with({53, 1, 1, 43, 255, 1, 2, 3});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("iteration stops at the bad option and says why") {
        const bytes m = request_with({53, 1, 1, 12, 2, 'v', 'm', 43, 200});
        std::vector<int> seen;
        auto it = view(m).options().begin();
        for (; it != std::default_sentinel; ++it) seen.push_back(it->code);
        CHECK(seen == std::vector<int>{53, 12});
        CHECK(it.error() == errc::bad_option);
    }
}

TEST_CASE("typed options: absent, well-formed and malformed are three different answers") {
    struct bad_case {
        const char* what;
        std::vector<int> options;
        std::error_code expected;
    };
    const std::vector<bad_case> cases{
        {"message type, length 0", {53, 0}, errc::bad_option},
        {"message type, length 2", {53, 2, 1, 1}, errc::bad_option},
        {"message type 0", {53, 1, 0}, errc::unsupported},
        {"message type 9 (FORCERENEW)", {53, 1, 9}, errc::unsupported},
        {"requested IP, length 3", {50, 3, 192, 168, 64}, errc::bad_option},
        {"requested IP, length 5", {50, 5, 192, 168, 64, 1, 1}, errc::bad_option},
        {"server id, length 0", {54, 0}, errc::bad_option},
        {"client id, length 1", {61, 1, 1}, errc::bad_option},
        {"client id, length 0", {61, 0}, errc::bad_option},
        {"host name, length 0", {12, 0}, errc::bad_option},
        {"parameter request list, length 0", {55, 0}, errc::bad_option},
        {"max message size, length 1", {57, 1, 2}, errc::bad_option},
        {"max message size, length 4", {57, 4, 0, 0, 2, 64}, errc::bad_option},
        {"max message size 575", {57, 2, 0x02, 0x3f}, errc::bad_field},
        {"max message size 0", {57, 2, 0, 0}, errc::bad_field},
        {"lease time, length 3", {51, 3, 0, 0, 1}, errc::bad_option},
        {"vendor class, length 0", {60, 0}, errc::bad_option},
        {"message type twice (RFC 3396 concatenation is not done)", {53, 1, 1, 53, 1, 1}, errc::unsupported},
        {"host name twice", {12, 1, 'a', 12, 1, 'b'}, errc::unsupported},
        {"client id twice", {61, 2, 0, 1, 61, 2, 0, 1}, errc::unsupported},
        {"overload, length 0", {52, 0}, errc::bad_option},
        {"overload, length 2", {52, 2, 1, 1}, errc::bad_option},
        {"overload 0", {52, 1, 0}, errc::bad_option},
        {"overload 4", {52, 1, 4}, errc::bad_option},
        {"overload twice", {52, 1, 1, 52, 1, 1}, errc::bad_option},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        const bytes m = request_with(c.options);
        const auto v = view(m);
        CHECK(dhcp::repr::parse(m).error() == c.expected);
        const std::uint8_t code = static_cast<std::uint8_t>(c.options.front());
        std::error_code got;
        switch (code) {
        case 53: got = v.message_type().error(); break;
        case 50: got = v.requested_ip().error(); break;
        case 54: got = v.server_id().error(); break;
        case 61: got = v.client_id().error(); break;
        case 12: got = v.host_name().error(); break;
        case 55: got = v.parameter_request_list().error(); break;
        case 57: got = v.max_message_size().error(); break;
        case 51: got = v.lease_time().error(); break;
        case 60: got = v.vendor_class().error(); break;
        case 52: got = v.overload().error(); break;
        default: FAIL("no accessor for " << int{code});
        }
        CHECK(got == c.expected);
    }

    SECTION("the smallest well-formed values are accepted") {
        const bytes m = request_with({53, 1, 8, 61, 2, 0, 'x', 12, 1, 'h', 55, 1, 1, 57, 2, 0x02, 0x40, 60, 1, 'v',
                                      51, 4, 0xff, 0xff, 0xff, 0xff, 50, 4, 10, 0, 0, 1, 54, 4, 10, 0, 0, 2, 255});
        const auto r = dhcp::repr::parse(m);
        REQUIRE(r);
        CHECK(r->message_type == dhcp::message_type::inform);
        CHECK(of(r->client_id) == make({0, 'x'}));
        CHECK(r->host_name == "h");
        CHECK(of(r->parameter_request_list) == make({1}));
        CHECK(r->max_message_size == 576);
        CHECK(r->vendor_class == "v");
        CHECK(r->lease_time == 0xffffffffu);
        CHECK(r->requested_ip == ipv4_address{10, 0, 0, 1});
        CHECK(r->server_id == ipv4_address{10, 0, 0, 2});
        CHECK(dhcp::max_reply_len(r->max_message_size) == 548);
    }
    SECTION("other codes may repeat: the iterator shows both, find_option refuses to pick one") {
        const bytes m = request_with({53, 1, 1, 43, 1, 'a', 43, 1, 'b', 255});
        CHECK(codes(view(m)) == std::vector<int>{53, 43, 43});
        CHECK(view(m).find_option(43).error() == errc::unsupported);
        const auto r = dhcp::repr::parse(m);
        REQUIRE(r);
        CHECK(emit(*r) == m); // both kept, in order
    }
    SECTION("pads are skipped anywhere, and nothing after the end option is read") {
        const bytes m = request_with({0, 0, 53, 1, 3, 0, 255, 53, 200});
        CHECK(codes(view(m)) == std::vector<int>{53});
        const auto r = dhcp::repr::parse(m);
        REQUIRE(r);
        CHECK(r->message_type == dhcp::message_type::request);
        // Pads before the end option are kept on emit; what followed it is not.
        const bytes out = emit(*r);
        CHECK(bytes(out.begin() + 240, out.begin() + 248) == make({0, 0, 53, 1, 3, 0, 255, 0}));
    }
}

// --- option overload --------------------------------------------------------------------------

namespace {

/// A request whose options field says `overload` and holds a message type; file and sname get the
/// given bytes at their start.
bytes overloaded(int overload, const std::vector<int>& file, const std::vector<int>& sname) {
    bytes m = request_with({53, 1, 1, 52, 1, overload, 255});
    put(m, dhcp::field::file, file);
    put(m, dhcp::field::sname, sname);
    return m;
}

std::vector<dhcp::option_area> areas(const dhcp::packet<const_bytes>& message) {
    std::vector<dhcp::option_area> out;
    for (const auto& o : message.options()) out.push_back(o.area);
    return out;
}

} // namespace

TEST_CASE("option overload 1: file carries options, sname keeps its name") {
    const bytes m = overloaded(1, {12, 8, 'f', 'i', 'l', 'e', 'h', 'o', 's', 't', 61, 2, 0, 'z', 255},
                               {'s', 'r', 'v', '.', 't', 'e', 's', 't'});
    const auto v = view(m);
    CHECK(codes(v) == std::vector<int>{53, 52, 12, 61});
    using dhcp::option_area;
    CHECK(areas(v) == std::vector<option_area>{option_area::options, option_area::options, option_area::file,
                                                  option_area::file});
    CHECK(v.overload().value() == dhcp::overload_file);
    CHECK(v.host_name().value() == "filehost");
    CHECK(of(v.client_id().value().value()) == make({0, 'z'}));

    const auto r = dhcp::repr::parse(m);
    REQUIRE(r);
    CHECK(r->host_name == "filehost");
    CHECK(r->file.empty());
    CHECK(r->file_options.size() == dhcp::file_len);
    CHECK(r->sname_options.empty());
    CHECK(text(r->sname.first(8)) == "srv.test");

    // Emit moves the options into the options field and drops option 52; file becomes zeros.
    const bytes out = emit(*r);
    const auto o = view(out);
    CHECK(codes(o) == std::vector<int>{53, 12, 61});
    CHECK_FALSE(o.overload().value());
    CHECK(all_zero(o.file()));
    CHECK(of(o.sname()) == of(v.sname()));
    const auto again = dhcp::repr::parse(out);
    REQUIRE(again);
    CHECK(*again == *r);
}

TEST_CASE("option overload 2: sname carries options, file keeps its name") {
    const bytes m = overloaded(2, {'p', 'x', 'e', 'l', 'i', 'n', 'u', 'x', '.', '0'}, {60, 3, 'P', 'X', 'E', 255});
    const auto v = view(m);
    CHECK(codes(v) == std::vector<int>{53, 52, 60});
    CHECK(areas(v).back() == dhcp::option_area::sname);
    CHECK(v.vendor_class().value() == "PXE");
    const auto r = dhcp::repr::parse(m);
    REQUIRE(r);
    CHECK(r->sname.empty());
    CHECK(r->sname_options.size() == dhcp::sname_len);
    CHECK(text(r->file.first(10)) == "pxelinux.0");
    const bytes out = emit(*r);
    CHECK(codes(view(out)) == std::vector<int>{53, 60});
    CHECK(all_zero(view(out).sname()));
    CHECK(text(view(out).file().first(10)) == "pxelinux.0");
    CHECK(*dhcp::repr::parse(out) == *r);
}

TEST_CASE("option overload 3: file is read before sname (RFC 2131 §4.1)") {
    // sname comes first in the header; its options must still come after those of file.
    const bytes m = overloaded(3, {12, 1, 'f', 43, 1, 1, 255}, {43, 1, 2, 60, 1, 's', 255});
    const auto v = view(m);
    CHECK(codes(v) == std::vector<int>{53, 52, 12, 43, 43, 60});
    using dhcp::option_area;
    CHECK(areas(v) == std::vector<option_area>{option_area::options, option_area::options, option_area::file,
                                                  option_area::file, option_area::sname, option_area::sname});
    const auto r = dhcp::repr::parse(m);
    REQUIRE(r);
    CHECK(r->host_name == "f");
    CHECK(r->vendor_class == "s");
    CHECK(r->sname.empty());
    CHECK(r->file.empty());

    const bytes out = emit(*r);
    CHECK(codes(view(out)) == std::vector<int>{53, 12, 43, 43, 60});
    CHECK(option_starts(out).size() == 5);
    // The repeated 43 keeps its order across the move: file's value first.
    CHECK(at(out, 240 + 3 + 3 + 2) == 1);
    CHECK(at(out, 240 + 3 + 3 + 3 + 2) == 2);
    CHECK(all_zero(view(out).file()));
    CHECK(all_zero(view(out).sname()));
    CHECK(*dhcp::repr::parse(out) == *r);
}

TEST_CASE("overloaded fields are bounded by their own size") {
    SECTION("an option filling file exactly is fine, one byte more would reach the cookie") {
        bytes m = overloaded(1, {43, 126}, {});
        CHECK_FALSE(view(m).check_options());
        CHECK(option_value(view(m), 43).size() == 126);
        put(m, dhcp::field::file + 1, {127});
        CHECK(view(m).check_options() == errc::bad_option);
        CHECK(dhcp::repr::parse(m).error() == errc::bad_option);
    }
    SECTION("an option filling sname exactly is fine, one byte more would reach file") {
        bytes m = overloaded(2, {}, {43, 62});
        CHECK_FALSE(view(m).check_options());
        put(m, dhcp::field::sname + 1, {63});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("a code in the last byte of file, with its length outside") {
        bytes m = overloaded(1, {}, {});
        put(m, dhcp::field::file + dhcp::file_len - 1, {12});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("no end option in file: the field's end closes it") {
        bytes m = overloaded(1, {}, {});
        for (std::size_t i = 0; i < dhcp::file_len; i += 4) put(m, dhcp::field::file + i, {43, 2, 7, 7});
        CHECK(codes(view(m)).size() == 2 + dhcp::file_len / 4);
    }
}

TEST_CASE("overload pointing at fields with bad content is refused") {
    SECTION("file holds a lying length") {
        const bytes m = overloaded(1, {12, 200, 'x'}, {});
        CHECK(view(m).check_options() == errc::bad_option);
        CHECK(dhcp::repr::parse(m).error() == errc::bad_option);
        CHECK(view(m).message_type().error() == errc::bad_option);
    }
    SECTION("sname holds a lying length") {
        const bytes m = overloaded(2, {}, {12, 64, 'x'});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("file is fine but sname is not, with overload 3") {
        const bytes m = overloaded(3, {12, 1, 'f', 255}, {60, 100});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("option 52 inside an overloaded field") {
        const bytes m = overloaded(1, {52, 1, 2, 255}, {});
        CHECK(view(m).check_options() == errc::bad_option);
    }
    SECTION("a typed option both in the options field and in file") {
        const bytes m = overloaded(1, {53, 1, 3, 255}, {});
        CHECK(dhcp::repr::parse(m).error() == errc::unsupported);
        CHECK(view(m).message_type().error() == errc::unsupported);
    }
    SECTION("without option 52 the same garbage is a file name, and never read") {
        bytes m = request_with({53, 1, 1, 255});
        put(m, dhcp::field::file, {12, 200, 'x'});
        put(m, dhcp::field::sname, {60, 100});
        CHECK_FALSE(view(m).check_options());
        CHECK(codes(view(m)) == std::vector<int>{53});
        const auto r = dhcp::repr::parse(m);
        REQUIRE(r);
        CHECK(emit(*r) == m);
    }
}

// --- option_writer ----------------------------------------------------------------------------

namespace {

/// The options a writer produced: bytes 240 up to (not including) the end option.
bytes written(const bytes& message) {
    return bytes(message.begin() + static_cast<std::ptrdiff_t>(dhcp::options_offset),
                 message.begin() + static_cast<std::ptrdiff_t>(end_offset(message)));
}

} // namespace

TEST_CASE("option_writer writes the cookie, the end option and pads to 300") {
    bytes out(600, std::byte{0xee});
    dhcp::option_writer w{out};
    CHECK(at(out, dhcp::field::cookie) == 99);
    CHECK(view(out).cookie() == dhcp::magic_cookie);
    CHECK_FALSE(w.message_type(dhcp::message_type::nak));
    const auto len = w.finish();
    REQUIRE(len);
    CHECK(*len == 300);
    CHECK(written(out) == make({53, 1, 6}));
    CHECK(at(out, 243) == 255);
    CHECK(all_zero(const_bytes{out}.subspan(244, 300 - 244)));
    CHECK(at(out, 300) == 0xee); // nothing past the message
    // The writer takes nothing after finish().
    CHECK(w.lease_time(1) == errc::bad_field);
    CHECK(at(out, 300) == 0xee);
}

TEST_CASE("option_writer typed helpers encode as RFC 2132, 3397 and 3442 say") {
    bytes out(1500);
    const auto one = [&](auto&& write) {
        dhcp::option_writer w{out};
        REQUIRE_FALSE(write(w));
        REQUIRE(w.finish());
        return written(out);
    };
    CHECK(one([](auto& w) { return w.subnet_mask(ipv4_address{255, 255, 0, 0}); }) == make({1, 4, 255, 255, 0, 0}));
    const std::array routers{ipv4_address{10, 0, 0, 1}, ipv4_address{10, 0, 0, 2}};
    CHECK(one([&](auto& w) { return w.routers(routers); }) == make({3, 8, 10, 0, 0, 1, 10, 0, 0, 2}));
    CHECK(one([&](auto& w) { return w.dns_servers(routers); }) == make({6, 8, 10, 0, 0, 1, 10, 0, 0, 2}));
    CHECK(one([](auto& w) { return w.host_name("vm1"); }) == make({12, 3, 'v', 'm', '1'}));
    CHECK(one([](auto& w) { return w.domain_name("lan"); }) == make({15, 3, 'l', 'a', 'n'}));
    CHECK(one([](auto& w) { return w.interface_mtu(68); }) == make({26, 2, 0, 68}));
    CHECK(one([](auto& w) { return w.broadcast_address(ipv4_address::broadcast()); }) ==
          make({28, 4, 255, 255, 255, 255}));
    CHECK(one([](auto& w) { return w.lease_time(0x01020304); }) == make({51, 4, 1, 2, 3, 4}));
    CHECK(one([](auto& w) { return w.server_id(gateway); }) == make({54, 4, 192, 168, 64, 1}));
    CHECK(one([](auto& w) { return w.renewal_time(1800); }) == make({58, 4, 0, 0, 0x07, 0x08}));
    CHECK(one([](auto& w) { return w.rebinding_time(3150); }) == make({59, 4, 0, 0, 0x0c, 0x4e}));
    CHECK(one([](auto& w) { return w.max_message_size(1500); }) == make({57, 2, 0x05, 0xdc}));
    CHECK(one([](auto& w) { return w.raw(dhcp::option_code::rapid_commit, {}); }) == make({80, 0}));
    CHECK(one([](auto& w) { return w.pad(2); }) == make({0, 0}));

    SECTION("domain search, uncompressed RFC 1035 names") {
        const std::array<std::string_view, 3> names{"eng.example.com", "example.com.", "x"};
        CHECK(one([&](auto& w) { return w.domain_search(names); }) ==
              make({119, 33, 3, 'e', 'n', 'g', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
                    7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 1, 'x', 0}));
        const std::string label63(63, 'a');
        const std::array<std::string_view, 1> longest{label63};
        CHECK(one([&](auto& w) { return w.domain_search(longest); }).size() == 2 + 1 + 63 + 1);
    }
    SECTION("classless static routes, RFC 3442's examples of widths") {
        const std::array routes{
            dhcp::classless_route{ipv4_prefix{ipv4_address{0, 0, 0, 0}, 0}, ipv4_address{10, 0, 0, 1}},
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 0, 0, 0}, 8}, ipv4_address{10, 0, 0, 1}},
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 17, 0, 0}, 16}, ipv4_address{10, 0, 0, 1}},
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 27, 129, 0}, 24}, ipv4_address{10, 0, 0, 1}},
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 229, 0, 128}, 25}, ipv4_address{10, 0, 0, 1}},
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 198, 122, 47}, 32}, ipv4_address{10, 0, 0, 1}},
            // Host bits are cleared: 10.129.2.3/9 is sent as 10.128.
            dhcp::classless_route{ipv4_prefix{ipv4_address{10, 129, 2, 3}, 9}, ipv4_address{10, 0, 0, 9}},
        };
        CHECK(one([&](auto& w) { return w.classless_static_routes(routes); }) ==
              make({121, 51,
                    0, 10, 0, 0, 1,
                    8, 10, 10, 0, 0, 1,
                    16, 10, 17, 10, 0, 0, 1,
                    24, 10, 27, 129, 10, 0, 0, 1,
                    25, 10, 229, 0, 128, 10, 0, 0, 1,
                    32, 10, 198, 122, 47, 10, 0, 0, 1,
                    9, 10, 128, 10, 0, 0, 9}));
    }
}

TEST_CASE("option_writer refuses values the RFCs forbid, writing nothing") {
    bytes out(1500);
    const auto refused = [&](auto&& write) {
        dhcp::option_writer w{out};
        const std::error_code ec = write(w);
        CHECK(w.error() == ec);
        CHECK(w.finish().error() == ec);
        CHECK(at(out, dhcp::options_offset) == 0); // nothing written (the buffer was zeros)
        return ec;
    };
    CHECK(refused([](auto& w) { return w.raw(0, {}); }) == errc::bad_field);
    CHECK(refused([](auto& w) { return w.raw(255, {}); }) == errc::bad_field);
    const bytes big(256);
    CHECK(refused([&](auto& w) { return w.raw(43, big); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.interface_mtu(67); }) == errc::bad_field);
    CHECK(refused([](auto& w) { return w.max_message_size(575); }) == errc::bad_field);
    CHECK(refused([](auto& w) { return w.host_name(""); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.host_name(std::string(256, 'h')); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.client_id(make({1})); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.parameter_request_list({}); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.routers({}); }) == errc::bad_field);
    const std::vector<ipv4_address> many(64, gateway); // 256 bytes
    CHECK(refused([&](auto& w) { return w.dns_servers(many); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.domain_search({}); }) == errc::bad_field);
    const std::string label64 = "ok." + std::string(64, 'a');
    for (std::string_view name : {std::string_view{""}, std::string_view{"."}, std::string_view{"a..b"},
                                  std::string_view{".a"}, std::string_view{label64}}) {
        INFO(name);
        const std::array names{name};
        CHECK(refused([&](auto& w) { return w.domain_search(names); }) == errc::bad_field);
    }
    const std::string long_name = std::string(60, 'a') + "." + std::string(60, 'b') + "." + std::string(60, 'c') + "." +
                                  std::string(60, 'd') + "." + std::string(20, 'e');
    const std::array<std::string_view, 1> too_long{long_name};
    CHECK(refused([&](auto& w) { return w.domain_search(too_long); }) == errc::bad_length);
    const std::string_view part = std::string_view{long_name}.substr(0, 122); // 123 bytes encoded
    const std::array<std::string_view, 3> together{part, part, part};
    CHECK(refused([&](auto& w) { return w.domain_search(together); }) == errc::bad_length);
    CHECK(refused([](auto& w) { return w.classless_static_routes({}); }) == errc::bad_field);
    const std::vector<dhcp::classless_route> routes(29, dhcp::classless_route{ipv4_prefix{gateway, 32}, gateway});
    CHECK(refused([&](auto& w) { return w.classless_static_routes(routes); }) == errc::bad_length); // 29 * 9
}

TEST_CASE("option_writer checks every option against the buffer and the client's size limit") {
    SECTION("a limit below 300 (or a buffer that small) cannot hold a message") {
        bytes small(299);
        dhcp::option_writer w{small};
        CHECK(w.error() == errc::buffer_too_small);
        CHECK(w.remaining() == 0);
        CHECK(w.message_type(dhcp::message_type::ack) == errc::buffer_too_small);
        CHECK(w.finish().error() == errc::buffer_too_small);
        CHECK(all_zero(small)); // not even the cookie
        bytes big(1500);
        CHECK(dhcp::option_writer{big, 299}.error() == errc::buffer_too_small);
    }
    SECTION("the maximum message size the client sent bounds the reply") {
        // udhcpc said 576: the reply may be 548 bytes of UDP payload.
        const bytes message = hex(udhcpc_request);
        const auto request = dhcp::repr::parse(message);
        REQUIRE(request);
        const std::size_t limit = dhcp::max_reply_len(request->max_message_size);
        REQUIRE(limit == 548);
        bytes out(1500, std::byte{0xee});
        dhcp::option_writer w{out, limit};
        CHECK(w.remaining() == 548 - 240 - 1);
        const bytes vendor(255, std::byte{0x42});
        CHECK_FALSE(w.raw(43, vendor)); // 240 + 257 = 497
        CHECK(w.remaining() == 50);
        CHECK(w.raw(43, const_bytes{vendor}.first(49)) == errc::buffer_too_small);
        CHECK(at(out, 497) == 0xee); // the refused option wrote nothing
        CHECK(w.lease_time(60) == errc::buffer_too_small); // sticky: the first error stays
        CHECK(w.finish().error() == errc::buffer_too_small);
    }
    SECTION("remaining() lets a server leave out what does not fit and still finish") {
        bytes out(1500);
        dhcp::option_writer w{out, dhcp::default_max_reply_len};
        const bytes vendor(255, std::byte{0x42});
        CHECK_FALSE(w.raw(43, vendor));
        if (w.remaining() >= 2 + vendor.size()) CHECK_FALSE(w.raw(43, vendor));
        CHECK_FALSE(w.raw(43, const_bytes{vendor}.first(48))); // exactly fills: 497 + 50 + end = 548
        CHECK(w.remaining() == 0);
        const auto len = w.finish();
        REQUIRE(len);
        CHECK(*len == 548);
        CHECK(at(out, 547) == 255);
    }
    SECTION("max_reply_len reads option 57 conservatively") {
        CHECK(dhcp::max_reply_len(std::nullopt) == 548);
        CHECK(dhcp::max_reply_len(575) == 548); // illegal: treated as absent
        CHECK(dhcp::max_reply_len(576) == 548);
        CHECK(dhcp::max_reply_len(1500) == 1472);
        CHECK(dhcp::max_reply_len(65535) == 65507);
    }
}

// --- repr emit --------------------------------------------------------------------------------

TEST_CASE("a repr built by a server emits its typed fields in a fixed order") {
    dhcp::repr ack;
    ack.op = dhcp::boot_reply;
    ack.xid = 0xdeadbeef;
    ack.flags = dhcp::broadcast_flag;
    ack.yiaddr = leased;
    ack.siaddr = gateway;
    std::copy(client_mac.octets().begin(), client_mac.octets().end(), ack.chaddr.begin());
    ack.message_type = dhcp::message_type::ack;
    ack.server_id = gateway;
    ack.lease_time = 3600;
    ack.host_name = "vm1";
    const bytes out = emit(ack);
    CHECK(out.size() == 300);
    const auto v = dhcp::packet<const_bytes>::checked(out);
    REQUIRE(v);
    CHECK(v->broadcast());
    CHECK(v->client_mac() == client_mac);
    CHECK(written(out) == make({53, 1, 5, 54, 4, 192, 168, 64, 1, 51, 4, 0, 0, 0x0e, 0x10, 12, 3, 'v', 'm', '1'}));
    const auto back = dhcp::repr::parse(out);
    REQUIRE(back);
    CHECK(*back == ack);
    CHECK(back->broadcast());

    SECTION("emit_header refuses what parse would refuse") {
        bytes buffer(300);
        dhcp::repr bad = ack;
        bad.hlen = 17;
        CHECK(bad.emit_header(buffer) == errc::bad_length);
        CHECK(bad.emit(buffer) == errc::bad_length);
        bad = ack;
        bad.op = 0;
        CHECK(bad.emit_header(buffer) == errc::bad_field);
        bad = ack;
        const bytes name(65, std::byte{'n'});
        bad.sname = name;
        CHECK(bad.emit_header(buffer) == errc::bad_length);
        bytes header_only(dhcp::header_len - 1);
        CHECK(ack.emit_header(header_only) == errc::buffer_too_small);
    }
    SECTION("typed fields the writer would refuse make emit fail") {
        bytes buffer(600);
        dhcp::repr bad = ack;
        bad.max_message_size = 100;
        CHECK(bad.emit(buffer) == errc::bad_field);
        bad = ack;
        const bytes one_byte = make({1});
        bad.client_id = one_byte;
        CHECK(bad.emit(buffer) == errc::bad_length);
    }
    SECTION("raw options that do not hold together make emit fail") {
        bytes buffer(600);
        dhcp::repr bad = ack;
        const bytes lying = make({43, 10, 1});
        bad.options = lying;
        CHECK(bad.emit(buffer) == errc::bad_option);
        // Option 52 belongs in the options field only, even in kept-aside overloaded areas.
        const bytes nested = make({52, 1, 1, 255});
        bad.options = {};
        bad.file_options = nested;
        CHECK(bad.emit(buffer) == errc::bad_option);
    }
}

TEST_CASE("changing a parsed repr changes the emitted message in place") {
    const bytes original = hex(udhcpc_request);
    auto r = dhcp::repr::parse(original);
    REQUIRE(r);
    r->requested_ip = ipv4_address{192, 168, 64, 99};
    r->host_name = "renamed";
    r->vendor_class = {}; // dropped
    r->lease_time = 600;  // not in the request: goes at the end
    const bytes out = emit(*r);
    const auto v = view(out);
    CHECK(codes(v) == std::vector<int>{53, 50, 54, 57, 55, 12, 61, 51});
    CHECK(v.requested_ip().value() == ipv4_address{192, 168, 64, 99});
    CHECK(v.host_name().value() == "renamed");
    CHECK_FALSE(v.vendor_class().value());
    CHECK(v.lease_time().value() == 600u);
    CHECK(of(v.client_id().value().value()) == of(r->client_id));
    const auto again = dhcp::repr::parse(out);
    REQUIRE(again);
    CHECK(*again == *r);
    CHECK_FALSE(*again == *dhcp::repr::parse(original));
}

TEST_CASE("repr equality compares fields and options, not padding or placement") {
    const bytes message = hex(dhclient_discover);
    const auto a = dhcp::repr::parse(message);
    REQUIRE(a);
    dhcp::repr b = *a;
    CHECK(b == *a);
    const bytes no_name{};
    b.sname = no_name; // all zeros either way
    CHECK(b == *a);
    const bytes other_name = make({'x'});
    b.sname = other_name;
    CHECK_FALSE(b == *a);
    b = *a;
    b.xid ^= 1;
    CHECK_FALSE(b == *a);
    b = *a;
    const bytes extra = make({43, 1, 7, 255});
    b.options = extra; // loses 12 and 55 from the raw area, but those are typed fields
    CHECK_FALSE(b == *a); // 43 is an extra option
    const bytes same_typed = make({55, 1, 1, 0, 0, 255});
    b.options = same_typed;
    CHECK(b == *a); // typed codes and pads aside, both have no other options
}

// --- writable view ----------------------------------------------------------------------------

TEST_CASE("a writable view sets the header fields") {
    bytes m = hex(dhclient_request);
    dhcp::packet<mutable_bytes> w{m};
    REQUIRE_FALSE(w.check_len());
    w.set_op(dhcp::boot_reply);
    w.set_hops(1);
    w.set_xid(0x01020304);
    w.set_secs(9);
    w.set_flags(0x0001);
    w.set_broadcast(true);
    CHECK(w.flags() == 0x8001);
    w.set_broadcast(false);
    CHECK(w.flags() == 0x0001);
    w.set_ciaddr(ipv4_address{1, 2, 3, 4});
    w.set_yiaddr(leased);
    w.set_siaddr(gateway);
    w.set_giaddr(ipv4_address{10, 0, 0, 1});
    w.set_client_mac(mac_address{{2, 0, 0, 0, 0, 1}});
    const auto v = view(m);
    CHECK(v.op() == dhcp::boot_reply);
    CHECK(v.hops() == 1);
    CHECK(v.xid() == 0x01020304);
    CHECK(v.secs() == 9);
    CHECK(v.ciaddr() == ipv4_address{1, 2, 3, 4});
    CHECK(v.yiaddr() == leased);
    CHECK(v.siaddr() == gateway);
    CHECK(v.giaddr() == ipv4_address{10, 0, 0, 1});
    CHECK(v.client_mac() == mac_address{{2, 0, 0, 0, 0, 1}});
    CHECK(all_zero(v.chaddr().subspan(6)));
    // A setter may break the header's rules; check_len() says so and hardware_address() stays inside.
    w.set_hlen(200);
    CHECK(v.check_len() == errc::bad_length);
    CHECK(v.hardware_address().size() == 16);
    w.set_hlen(6);
    put(m, dhcp::field::cookie, {0, 0, 0, 0});
    CHECK(v.check_len() == errc::bad_field);
    w.set_cookie();
    CHECK_FALSE(v.check_len());
    CHECK(codes(v) == std::vector<int>{53, 54, 50, 12, 55});
}

TEST_CASE("the options of a buffer too short for them are an error, not a read") {
    const bytes short_message(100, std::byte{1});
    const auto v = view(short_message);
    CHECK(v.options().error() == errc::truncated);
    CHECK(v.options().begin() == std::default_sentinel);
    CHECK(v.options_area().empty());
    CHECK(v.message_type().error() == errc::truncated);
    CHECK(dhcp::packet<const_bytes>::checked(short_message).error() == errc::truncated);
}
