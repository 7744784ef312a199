// dns::forwarder and dns::tcp_listener against a real resolver: dnsmasq started on loopback by each
// test that needs one, plus in-test UDP servers that never answer or answer another question.
// Every forwarder here names its upstreams explicitly (or a resolv.conf in a temp dir): nothing
// reaches the machine's own resolver.
#include <ankanet/dns/forwarder.hpp>
#include <ankanet/dns/tcp_listener.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/dhcp/client_frames.hpp>
#include <ankanet/dhcp/service.hpp>
#include <ankanet/network.hpp>

#include "../support/skip.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

using namespace ankanet;
using namespace std::chrono_literals;
using byte_vector = std::vector<std::byte>;
using udp = boost::asio::ip::udp;
using tcp = boost::asio::ip::tcp;
namespace wdns = wire::dns;

namespace {

const wire::ipv4_address gateway_ip{192, 168, 64, 1};
const wire::mac_address gateway_mac = default_gateway_mac;
const wire::mac_address mac_a{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}};
const wire::mac_address mac_b{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}};
const wire::ipv4_address ip_a{192, 168, 64, 2};
const wire::ipv4_address ip_b{192, 168, 64, 3};
const port_handle port_a = port_handle::make(1, 1);
const port_handle port_b = port_handle::make(2, 1);

// --- a real resolver: dnsmasq on loopback ---------------------------------------------------------

/// A port free for both UDP and TCP on 127.0.0.1 right now.
std::uint16_t free_port() {
    boost::asio::io_context io;
    for (int i = 0; i < 20; ++i) {
        udp::socket u{io, udp::endpoint{boost::asio::ip::address_v4::loopback(), 0}};
        const auto port = u.local_endpoint().port();
        boost::system::error_code ec;
        tcp::acceptor t{io};
        t.open(tcp::v4());
        t.bind(tcp::endpoint{boost::asio::ip::address_v4::loopback(), port}, ec);
        if (!ec) return port;
    }
    throw std::runtime_error("no free port");
}

/// The zones the test resolvers serve (dnsmasq answers only from its command line):
///   resolver:  *.x.test A 198.51.100.7 and AAAA 2001:db8::7, t.x.test TXT "hello world",
///              *.gone.test NXDOMAIN;
///   authority: nx.test, authoritative: unknown names are NXDOMAIN with the zone's SOA.
enum class dnsmasq_role { resolver, authority };

/// dnsmasq in the foreground on 127.0.0.1:port, killed when the test leaves.
class dnsmasq {
public:
    explicit dnsmasq(dnsmasq_role role = dnsmasq_role::resolver) : port_(free_port()) {
        std::vector<std::string> args{"dnsmasq",       "--keep-in-foreground", "--no-resolv",
                                      "--no-hosts",    "--no-poll",            "--port=" + std::to_string(port_),
                                      "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                                      "--user=",       "--log-facility=/dev/null"};
        if (role == dnsmasq_role::resolver) {
            args.insert(args.end(), {"--address=/x.test/198.51.100.7", "--address=/x.test/2001:db8::7",
                                     "--txt-record=t.x.test,hello world", "--address=/gone.test/"});
        } else {
            // Queries arriving on lo are authoritative ones: NXDOMAIN carries the SOA.
            args.insert(args.end(), {"--auth-zone=nx.test", "--auth-server=ns.nx.test,lo",
                                     "--auth-soa=2026120701,hostmaster.nx.test"});
        }
        const char* probe = role == dnsmasq_role::resolver ? "ready.x.test" : "ready.nx.test";
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        int rc = posix_spawnp(&pid_, "dnsmasq", &actions, nullptr, argv.data(), environ);
        if (rc != 0) rc = posix_spawn(&pid_, "/usr/sbin/dnsmasq", &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            pid_ = -1;
            return;
        }
        // Ready when it answers.
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (std::chrono::steady_clock::now() < deadline && !ready_) {
            ready_ = !ask(query(1, probe, wdns::type::a), 100ms).empty();
        }
    }
    ~dnsmasq() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    dnsmasq(const dnsmasq&) = delete;
    dnsmasq& operator=(const dnsmasq&) = delete;

    bool running() const { return ready_; }
    std::uint16_t port() const { return port_; }
    dns::upstream upstream() const { return {boost::asio::ip::address_v4::loopback(), port_}; }

    /// Asks it directly over UDP; the reply, or empty after `wait`.
    byte_vector ask(const byte_vector& message, std::chrono::milliseconds wait = 2000ms) const {
        boost::asio::io_context io;
        udp::socket s{io, udp::endpoint{udp::v4(), 0}};
        s.send_to(boost::asio::buffer(message), udp::endpoint{boost::asio::ip::address_v4::loopback(), port_});
        byte_vector reply(65535);
        std::size_t got = 0;
        s.async_receive(boost::asio::buffer(reply), [&](boost::system::error_code ec, std::size_t n) {
            if (!ec) got = n;
        });
        io.run_for(wait);
        reply.resize(got);
        return reply;
    }

    static byte_vector query(std::uint16_t id, std::string_view name, std::uint16_t type, bool edns = true) {
        auto r = wdns::repr::make_query(id, wdns::question{wdns::name::from_text(name).value(), type, wdns::rr_class::in});
        if (edns) r.edns = wdns::edns{};
        byte_vector out(r.buffer_len());
        REQUIRE_FALSE(r.emit(out));
        return out;
    }

private:
    std::uint16_t port_;
    pid_t pid_ = -1;
    bool ready_ = false;
};

#define REQUIRE_DNSMASQ(server) ANKANET_REQUIRE_ENVIRONMENT((server).running(), "dnsmasq (Debian's dnsmasq-base) did not start")

// --- in-test upstreams ------------------------------------------------------------------------------

/// What a fake_upstream does with a query.
enum class upstream_mode { silent, other_question, big_answer };

/// A UDP server on loopback that records what it gets and never answers — or answers every
/// query (QR, same ID) for another name, or with 60 A records for the name asked.
class fake_upstream {
public:
    explicit fake_upstream(boost::asio::io_context& io, upstream_mode mode = upstream_mode::silent,
                           boost::asio::ip::address address = boost::asio::ip::address_v4::loopback(), std::uint16_t port = 0)
        : socket_(io, udp::endpoint{address, port}), mode_(mode) {
        receive();
    }
    dns::upstream upstream() const { return {socket_.local_endpoint().address(), socket_.local_endpoint().port()}; }
    const std::vector<byte_vector>& received() const { return received_; }

private:
    void receive() {
        socket_.async_receive_from(boost::asio::buffer(buffer_), from_, [this](boost::system::error_code ec, std::size_t n) {
            if (ec) return;
            received_.emplace_back(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
            const wdns::packet<wire::const_bytes> q{wire::const_bytes{received_.back()}};
            if (mode_ == upstream_mode::other_question) {
                auto r = wdns::repr::make_response(q.id(), q.flags(),
                                                   wdns::question{wdns::name::from_text("other.x.test").value(), wdns::type::a,
                                                                  wdns::rr_class::in},
                                                   0);
                (void)r.add_answer(wire::ipv4_address{203, 0, 113, 66}, 60);
                byte_vector out(r.buffer_len());
                (void)r.emit(out);
                socket_.send_to(boost::asio::buffer(out), from_);
            } else if (mode_ == upstream_mode::big_answer) {
                // The query's header and question, then 60 A records (owner: a pointer to the question).
                const auto question = wdns::first_question(received_.back()).value();
                const std::size_t question_end = wdns::header_len + question.qname.encoded_length() + 4;
                byte_vector out(received_.back().begin(), received_.back().begin() + static_cast<std::ptrdiff_t>(question_end));
                wdns::packet<wire::mutable_bytes> h{wire::mutable_bytes{out}};
                h.set_flags(static_cast<std::uint16_t>(q.flags() | wdns::flag::qr | wdns::flag::ra));
                h.set_ancount(60);
                h.set_nscount(0);
                h.set_arcount(0);
                for (std::uint8_t i = 0; i < 60; ++i) {
                    const std::uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, i};
                    for (auto b : rr) out.push_back(std::byte{b});
                }
                socket_.send_to(boost::asio::buffer(out), from_);
            }
            receive();
        });
    }
    udp::socket socket_;
    upstream_mode mode_;
    std::array<std::byte, 65535> buffer_{};
    udp::endpoint from_;
    std::vector<byte_vector> received_;
};

// --- the guests' side -----------------------------------------------------------------------------

/// A VM's frame: UDP from (mac, ip, port) to gateway:53 carrying `message`.
byte_vector query_frame(wire::mac_address mac, wire::ipv4_address ip, std::uint16_t port, const byte_vector& message,
                        std::uint16_t to_port = 53, wire::ipv4_address to = gateway_ip) {
    byte_vector frame(nat::guest_headers_len + wire::udp::header_len + message.size());
    REQUIRE(nat::write_guest_headers(frame, mac, gateway_mac, ip, to, wire::udp::protocol_number,
                                     wire::udp::header_len + message.size()) == frame.size());
    std::copy(message.begin(), message.end(), frame.begin() + static_cast<std::ptrdiff_t>(nat::guest_headers_len + wire::udp::header_len));
    const wire::udp::repr u{port, to_port, message.size()};
    REQUIRE_FALSE(u.emit(wire::mutable_bytes{frame}.subspan(nat::guest_headers_len), ip, to));
    return frame;
}

/// What a guest received: the frame checked (gateway:53 → the guest, checksums good), its DNS bytes.
struct guest_reply {
    std::optional<port_handle> port;
    byte_vector frame;

    byte_vector dns(wire::mac_address mac, wire::ipv4_address ip, std::uint16_t guest_port) const {
        const auto f = wire::parsed_frame::parse(frame);
        REQUIRE(f.is_ipv4());
        CHECK(f.source == gateway_mac);
        CHECK(f.destination == mac);
        CHECK(f.ip_source == gateway_ip);
        CHECK(f.ip_destination == ip);
        REQUIRE(f.has_ports);
        CHECK(f.source_port == 53);
        CHECK(f.destination_port == guest_port);
        const wire::ipv4::packet<wire::const_bytes> datagram{f.ip};
        REQUIRE_FALSE(datagram.check_len());
        CHECK(datagram.verify_checksum());
        const auto u = wire::udp::repr::parse(datagram.payload(), f.ip_source, f.ip_destination);
        REQUIRE(u);
        const auto payload = datagram.payload().subspan(wire::udp::header_len, u->payload_len);
        return byte_vector(payload.begin(), payload.end());
    }
};

/// Stands for basic_network's service_context: records what the service sends.
struct fake_context {
    port_handle from = port_a;
    wire::mac_address mac = mac_a;
    network_time time{std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
    std::vector<guest_reply> sent;
    std::map<wire::ipv4_address, wire::mac_address> leases;

    void operator()(wire::const_bytes f) { sent.push_back({std::nullopt, byte_vector(f.begin(), f.end())}); }
    void answer(wire::const_bytes f) { sent.push_back({from, byte_vector(f.begin(), f.end())}); }
    void send_to(port_handle to, wire::const_bytes f) { sent.push_back({to, byte_vector(f.begin(), f.end())}); }
    std::optional<port_handle> port() const { return from; }
    network_time now() const { return time; }
    std::string_view port_name() const { return "vm"; }
    mac_address port_mac() const { return mac; }
    bool attached(mac_address) const { return true; }
    template <class Event>
    void notify(const Event&) {}
    std::optional<mac_address> lease_holder(ipv4_address a) const {
        const auto it = leases.find(a);
        if (it == leases.end()) return std::nullopt;
        return it->second;
    }
};

/// A guest's context: its port, MAC and the address it sends from.
struct guest {
    port_handle port;
    wire::mac_address mac;
    wire::ipv4_address ip;
};
const guest guest_a{port_a, mac_a, ip_a};
const guest guest_b{port_b, mac_b, ip_b};

inspection send_query(dns::forwarder& f, fake_context& ctx, const guest& g, std::uint16_t src_port, const byte_vector& message) {
    ctx.from = g.port;
    ctx.mac = g.mac;
    const auto frame = query_frame(g.mac, g.ip, src_port, message);
    return f.inspect(wire::parsed_frame::parse(frame), ctx);
}

/// Runs `io` until `done()` or `limit`.
template <class Done>
bool pump(boost::asio::io_context& io, Done done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(10ms);
        if (io.stopped()) io.restart();
    }
    return done();
}

/// Waits (on another thread's io_context) until `done()`, at most `limit`.
template <class Done>
bool pump_until(Done done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return done();
}

/// Waits for `count` held replies and releases them into `ctx`.
void collect(boost::asio::io_context& io, dns::forwarder& f, fake_context& ctx, std::size_t count = 1,
             std::chrono::milliseconds limit = 5000ms) {
    REQUIRE(pump(io, [&] { return f.held_replies() >= count; }, limit));
    REQUIRE(f.release_held(ctx, 64) == count);
}

dns::forwarder_config config_for(std::vector<dns::upstream> upstreams) {
    dns::forwarder_config c;
    c.upstreams.servers = std::move(upstreams);
    c.try_timeout = 200ms;
    return c;
}

std::uint16_t id_of(const byte_vector& m) { return wire::load_be16(wire::const_bytes{m}, 0); }
std::uint8_t rcode_of(const byte_vector& m) { return wdns::packet<wire::const_bytes>{wire::const_bytes{m}}.rcode(); }
/// The bytes after the ID.
byte_vector after_id(const byte_vector& m) { return byte_vector(m.begin() + 2, m.end()); }

} // namespace

// --- upstream text and resolv.conf ------------------------------------------------------------------

TEST_CASE("dns/forwarder: upstreams as IP[:PORT]") {
    const auto v4 = dns::parse_upstream("192.0.2.1");
    REQUIRE(v4);
    CHECK(v4->address == boost::asio::ip::make_address("192.0.2.1"));
    CHECK(v4->port == 53);
    const auto v4p = dns::parse_upstream("127.0.0.53:5353");
    REQUIRE(v4p);
    CHECK(v4p->port == 5353);
    const auto v6 = dns::parse_upstream("::1");
    REQUIRE(v6);
    CHECK(v6->address == boost::asio::ip::make_address("::1"));
    CHECK(v6->port == 53);
    const auto v6p = dns::parse_upstream("[2001:db8::1]:853");
    REQUIRE(v6p);
    CHECK(v6p->address == boost::asio::ip::make_address("2001:db8::1"));
    CHECK(v6p->port == 853);
    for (const auto* bad : {"", "dns.example", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "[::1", "[::1]x", "1.2.3.4:5x",
                            "[::1]:"}) {
        INFO(bad);
        CHECK_FALSE(dns::parse_upstream(bad));
    }
}

TEST_CASE("dns/forwarder: upstreams from resolv.conf follow the file") {
    test::temp_dir dir{"ankanet-dns"};
    const auto path = dir / "resolv.conf";
    { std::ofstream{path} << "# test\nnameserver 127.0.0.77\nnameserver ::1\n"; }
    dns::upstream_config config;
    config.resolv_conf = path.string();
    config.recheck = 0ms;
    dns::upstream_source source{config};
    const auto t = std::chrono::steady_clock::now();
    REQUIRE(source.current(t).size() == 2);
    CHECK(source.current(t)[0] == dns::upstream{boost::asio::ip::make_address("127.0.0.77"), 53});
    CHECK(source.current(t)[1].address == boost::asio::ip::make_address("::1"));
    const auto generation = source.generation();

    { std::ofstream{path} << "nameserver 127.0.0.78\n"; }
    REQUIRE(source.current(t + 1s).size() == 1);
    CHECK(source.current(t + 1s)[0].address == boost::asio::ip::make_address("127.0.0.78"));
    CHECK(source.generation() == generation + 1);

    // A file with nothing usable keeps the last good list.
    { std::ofstream{path} << "nameserver bogus-text-here\n"; }
    CHECK(source.current(t + 2s).size() == 1);
    CHECK(source.last_error());
    // So does a missing file.
    std::filesystem::remove(path);
    CHECK(source.current(t + 3s).size() == 1);

    // A configured list wins over the file.
    config.servers = {*dns::parse_upstream("127.0.0.1:5300")};
    dns::upstream_source fixed{config};
    REQUIRE(fixed.current(t).size() == 1);
    CHECK(fixed.current(t)[0].port == 5300);
}

TEST_CASE("dns/forwarder: queries go to the resolv.conf servers, re-read when the file changes") {
    boost::asio::io_context io;
    // Two silent servers on loopback port 53 of addresses no resolver uses; needs the right to bind port 53.
    std::optional<fake_upstream> first, second;
    try {
        first.emplace(io, upstream_mode::silent, boost::asio::ip::make_address("127.0.0.77"), 53);
        second.emplace(io, upstream_mode::silent, boost::asio::ip::make_address("127.0.0.78"), 53);
    } catch (const boost::system::system_error&) {
    }
    ANKANET_REQUIRE_ENVIRONMENT(first && second, "binding 127.0.0.77:53 (root or CAP_NET_BIND_SERVICE)");
    test::temp_dir dir{"ankanet-dns"};
    const auto path = dir / "resolv.conf";
    { std::ofstream{path} << "nameserver 127.0.0.77\n"; }
    auto config = config_for({});
    config.upstreams.resolv_conf = path.string();
    config.upstreams.recheck = 0ms;
    config.try_timeout = 5s;
    dns::forwarder f{io.get_executor(), config};
    fake_context ctx;

    CHECK(send_query(f, ctx, guest_a, 40000, dnsmasq::query(0x1111, "one.example", wdns::type::a)) == inspection::taken);
    REQUIRE(pump(io, [&] { return first->received().size() == 1; }));
    { std::ofstream{path} << "nameserver 127.0.0.78\n"; }
    CHECK(send_query(f, ctx, guest_a, 40000, dnsmasq::query(0x2222, "two.example", wdns::type::a)) == inspection::taken);
    REQUIRE(pump(io, [&] { return second->received().size() == 1; }));
    CHECK(first->received().size() == 1);

    // An empty file from the start: no upstream, SERVFAIL at once.
    { std::ofstream{dir / "empty.conf"} << "# nothing\n"; }
    auto none = config_for({});
    none.upstreams.resolv_conf = (dir / "empty.conf").string();
    dns::forwarder g{io.get_executor(), none};
    CHECK(send_query(g, ctx, guest_a, 40001, dnsmasq::query(0x3333, "three.example", wdns::type::a)) == inspection::taken);
    REQUIRE(ctx.sent.size() == 1);
    const auto reply = ctx.sent[0].dns(mac_a, ip_a, 40001);
    CHECK(id_of(reply) == 0x3333);
    CHECK(rcode_of(reply) == wdns::rcode::servfail);
    CHECK(g.stats().no_upstream == 1);
}

// --- the UDP path, against dnsmasq ----------------------------------------------------------------

TEST_CASE("dns/forwarder: upstream answers reach the guest byte for byte, its ID restored") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    dns::forwarder f{io.get_executor(), config_for({server.upstream()})};
    fake_context ctx;

    struct ask_case {
        const char* name;
        std::uint16_t type;
        std::uint8_t rcode;
        std::uint16_t answers;
        std::uint16_t authority;
    };
    const ask_case cases[] = {
        {"www.x.test", wdns::type::a, wdns::rcode::no_error, 1, 0},
        {"www.x.test", wdns::type::aaaa, wdns::rcode::no_error, 1, 0},
        {"t.x.test", wdns::type::txt, wdns::rcode::no_error, 1, 0},
        {"missing.gone.test", wdns::type::a, wdns::rcode::nxdomain, 0, 0},
    };
    std::uint16_t id = 0x4242;
    for (const auto& c : cases) {
        INFO(c.name << " type " << c.type);
        const auto message = dnsmasq::query(id, c.name, c.type);
        ctx.sent.clear();
        CHECK(send_query(f, ctx, guest_a, 33333, message) == inspection::taken);
        CHECK(ctx.sent.empty()); // nothing local
        collect(io, f, ctx);
        REQUIRE(ctx.sent.size() == 1);
        CHECK(ctx.sent[0].port == port_a);
        const auto reply = ctx.sent[0].dns(mac_a, ip_a, 33333);
        CHECK(id_of(reply) == id);
        const wdns::packet<wire::const_bytes> h{wire::const_bytes{reply}};
        CHECK(h.qr());
        CHECK(h.rcode() == c.rcode);
        CHECK(h.ancount() == c.answers);
        CHECK(h.nscount() == c.authority);
        // The same query asked of dnsmasq directly: the same bytes after the ID.
        const auto direct = server.ask(message);
        REQUIRE_FALSE(direct.empty());
        CHECK(after_id(reply) == after_id(direct));
        ++id;
    }
    const auto s = f.stats();
    CHECK(s.forwarded == 4);
    CHECK(s.replies == 4);
    CHECK(s.servfail == 0);
    CHECK(f.in_flight() == 0);
}

TEST_CASE("dns/forwarder: an upstream NXDOMAIN stays NXDOMAIN, with its SOA") {
    dnsmasq authority{dnsmasq_role::authority};
    REQUIRE_DNSMASQ(authority);
    boost::asio::io_context io;
    dns::forwarder f{io.get_executor(), config_for({authority.upstream()})};
    fake_context ctx;
    const auto message = dnsmasq::query(0x3030, "missing.nx.test", wdns::type::a);
    send_query(f, ctx, guest_a, 33334, message);
    collect(io, f, ctx);
    const auto reply = ctx.sent.at(0).dns(mac_a, ip_a, 33334);
    const auto m = wdns::message::parse(reply);
    REQUIRE(m);
    CHECK(m->header().id() == 0x3030);
    CHECK(m->header().rcode() == wdns::rcode::nxdomain);
    CHECK(m->header().aa());
    REQUIRE(m->header().nscount() == 1);
    for (const auto& rr : m->authorities()) CHECK(rr.type == wdns::type::soa);
    CHECK(after_id(reply) == after_id(authority.ask(message)));
}

TEST_CASE("dns/forwarder: the upstream never sees the guest's ID, and two guests with one ID get their own answers") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    dns::forwarder f{io.get_executor(), config_for({server.upstream()})};
    fake_context ctx;
    const auto message_a = dnsmasq::query(0x0101, "a.x.test", wdns::type::a);
    const auto message_b = dnsmasq::query(0x0101, "a.x.test", wdns::type::aaaa);
    CHECK(send_query(f, ctx, guest_a, 5353, message_a) == inspection::taken);
    CHECK(send_query(f, ctx, guest_b, 5353, message_b) == inspection::taken);
    CHECK(f.in_flight() == 2);
    collect(io, f, ctx, 2);
    REQUIRE(ctx.sent.size() == 2);
    std::map<port_handle, guest_reply> by_port;
    for (const auto& r : ctx.sent) {
        REQUIRE(r.port);
        by_port[*r.port] = r;
    }
    REQUIRE(by_port.size() == 2);
    const auto reply_a = by_port[port_a].dns(mac_a, ip_a, 5353);
    const auto reply_b = by_port[port_b].dns(mac_b, ip_b, 5353);
    CHECK(id_of(reply_a) == 0x0101);
    CHECK(id_of(reply_b) == 0x0101);
    CHECK(wdns::first_question(reply_a)->qtype == wdns::type::a);
    CHECK(wdns::first_question(reply_b)->qtype == wdns::type::aaaa);
    CHECK(after_id(reply_a) == after_id(server.ask(message_a)));
    CHECK(after_id(reply_b) == after_id(server.ask(message_b)));
}

TEST_CASE("dns/forwarder: a guest's retry of a query in flight is not relayed twice") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    auto config = config_for({silent.upstream()});
    config.try_timeout = 5s;
    dns::forwarder f{io.get_executor(), config};
    fake_context ctx;
    const auto message = dnsmasq::query(0x7777, "again.example", wdns::type::a);
    send_query(f, ctx, guest_a, 1000, message);
    send_query(f, ctx, guest_a, 1000, message);
    REQUIRE(pump(io, [&] { return silent.received().size() == 1; }));
    io.run_for(50ms);
    CHECK(silent.received().size() == 1);
    CHECK(f.stats().duplicates == 1);
    CHECK(f.in_flight() == 1);
}

// --- failures ------------------------------------------------------------------------------------

TEST_CASE("dns/forwarder: silent upstreams, each tried once, give SERVFAIL, never NXDOMAIN") {
    boost::asio::io_context io;
    fake_upstream first{io}, second{io};
    dns::forwarder f{io.get_executor(), config_for({first.upstream(), second.upstream()})};
    fake_context ctx;
    const auto message = dnsmasq::query(0xbeef, "slow.example", wdns::type::aaaa);
    const auto start = std::chrono::steady_clock::now();
    CHECK(send_query(f, ctx, guest_a, 4444, message) == inspection::taken);
    collect(io, f, ctx);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 400ms); // two tries of 200 ms
    CHECK(took < 3s);

    // Each upstream got the guest's bytes, the ID aside — a fresh ID per try.
    REQUIRE(first.received().size() == 1);
    REQUIRE(second.received().size() == 1);
    CHECK(after_id(first.received()[0]) == after_id(message));
    CHECK(after_id(second.received()[0]) == after_id(message));
    CHECK(id_of(first.received()[0]) != id_of(second.received()[0]));

    REQUIRE(ctx.sent.size() == 1);
    const auto reply = ctx.sent[0].dns(mac_a, ip_a, 4444);
    const wdns::packet<wire::const_bytes> h{wire::const_bytes{reply}};
    CHECK(h.id() == 0xbeef);
    CHECK(h.qr());
    CHECK(h.rd());
    CHECK(h.rcode() == wdns::rcode::servfail);
    CHECK(h.ancount() == 0);
    const auto q = wdns::first_question(reply);
    REQUIRE(q);
    CHECK(q->qtype == wdns::type::aaaa);
    CHECK(q->qname.iequals(wdns::first_question(message)->qname));
    CHECK(h.arcount() == 1); // the guest sent OPT
    const auto s = f.stats();
    CHECK(s.retries == 1);
    CHECK(s.servfail == 1);
    CHECK(f.in_flight() == 0);
}

TEST_CASE("dns/forwarder: a single silent upstream is tried twice, then SERVFAIL") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    dns::forwarder f{io.get_executor(), config_for({silent.upstream()})};
    fake_context ctx;
    send_query(f, ctx, guest_a, 4445, dnsmasq::query(0x1234, "slow.example", wdns::type::a, false));
    collect(io, f, ctx);
    CHECK(silent.received().size() == 2);
    const auto reply = ctx.sent.at(0).dns(mac_a, ip_a, 4445);
    CHECK(rcode_of(reply) == wdns::rcode::servfail);
    CHECK(wdns::packet<wire::const_bytes>{wire::const_bytes{reply}}.arcount() == 0); // no OPT asked, none sent
}

TEST_CASE("dns/forwarder: an upstream answer for another question is dropped, the guest gets SERVFAIL") {
    boost::asio::io_context io;
    fake_upstream liar{io, upstream_mode::other_question};
    dns::forwarder f{io.get_executor(), config_for({liar.upstream()})};
    fake_context ctx;
    send_query(f, ctx, guest_a, 4446, dnsmasq::query(0x5678, "asked.example", wdns::type::a));
    collect(io, f, ctx);
    REQUIRE(ctx.sent.size() == 1);
    const auto reply = ctx.sent[0].dns(mac_a, ip_a, 4446);
    CHECK(rcode_of(reply) == wdns::rcode::servfail);
    CHECK(wdns::first_question(reply)->qname.iequals(wdns::name::from_text("asked.example").value()));
    CHECK(f.stats().replies_unmatched == 2);
    CHECK(f.stats().replies == 0);
    CHECK(f.table_stats().question_mismatch == 2);
}

TEST_CASE("dns/forwarder: a guest flooding queries is refused at its limit, others are served") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    fake_upstream silent{io};
    auto config = config_for({silent.upstream()});
    config.try_timeout = 5s;
    config.table.per_vm_limit = 4;
    dns::forwarder f{io.get_executor(), config};
    fake_context ctx;
    for (std::uint16_t i = 0; i < 20; ++i) {
        CHECK(send_query(f, ctx, guest_a, 2000, dnsmasq::query(i, "flood" + std::to_string(i) + ".example", wdns::type::a)) ==
              inspection::taken);
    }
    CHECK(f.in_flight() == 4);
    CHECK(f.stats().refused_vm_limit == 16);
    CHECK(ctx.sent.empty()); // refused queries get no reply: a flood is not answered with a flood

    // The other guest still gets through.
    CHECK(send_query(f, ctx, guest_b, 2001, dnsmasq::query(9, "fine.example", wdns::type::a)) == inspection::taken);
    CHECK(f.in_flight() == 5);
    REQUIRE(pump(io, [&] { return silent.received().size() == 5; }));
}

TEST_CASE("dns/forwarder: a reply too long for the guest's MTU is cut to its question with TC") {
    boost::asio::io_context io;
    fake_upstream big{io, upstream_mode::big_answer};
    auto config = config_for({big.upstream()});
    config.mtu = 576;
    dns::forwarder f{io.get_executor(), config};
    fake_context ctx;
    const auto message = dnsmasq::query(0x0909, "Many.Example", wdns::type::a);
    send_query(f, ctx, guest_a, 9090, message);
    collect(io, f, ctx);
    const auto reply = ctx.sent.at(0).dns(mac_a, ip_a, 9090);
    CHECK(ctx.sent.at(0).frame.size() <= wire::ethernet::header_len + 576);
    const wdns::packet<wire::const_bytes> h{wire::const_bytes{reply}};
    CHECK(h.id() == 0x0909);
    CHECK(h.qr());
    CHECK(h.tc());
    CHECK(h.rcode() == wdns::rcode::no_error);
    CHECK(h.ancount() == 0);
    const auto q = wdns::first_question(reply);
    REQUIRE(q);
    CHECK(q->qname.decode() == wdns::name::from_text("Many.Example").value());
    CHECK(f.stats().replies_truncated == 1);

    // With room for it, the same answer goes whole.
    dns::forwarder roomy{io.get_executor(), config_for({big.upstream()})};
    fake_context ctx2;
    send_query(roomy, ctx2, guest_a, 9091, message);
    collect(io, roomy, ctx2);
    const auto whole = ctx2.sent.at(0).dns(mac_a, ip_a, 9091);
    CHECK(wdns::packet<wire::const_bytes>{wire::const_bytes{whole}}.ancount() == 60);
    CHECK_FALSE(wdns::packet<wire::const_bytes>{wire::const_bytes{whole}}.tc());
}

TEST_CASE("dns/forwarder: an IPv6 upstream (::1) is reached through its own socket") {
    boost::asio::io_context io;
    std::optional<fake_upstream> v6;
    try {
        v6.emplace(io, upstream_mode::big_answer, boost::asio::ip::make_address("::1"));
    } catch (const boost::system::system_error&) {
    }
    ANKANET_REQUIRE_ENVIRONMENT(v6.has_value(), "IPv6 loopback (::1)");
    dns::forwarder f{io.get_executor(), config_for({*dns::parse_upstream("[::1]:" + std::to_string(v6->upstream().port))})};
    fake_context ctx;
    send_query(f, ctx, guest_a, 6666, dnsmasq::query(0x0666, "six.example", wdns::type::a));
    collect(io, f, ctx);
    const auto reply = ctx.sent.at(0).dns(mac_a, ip_a, 6666);
    CHECK(id_of(reply) == 0x0666);
    CHECK(wdns::packet<wire::const_bytes>{wire::const_bytes{reply}}.ancount() == 60);
}

TEST_CASE("dns/forwarder: a VM's port going away forgets its queries in flight") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    auto config = config_for({silent.upstream()});
    config.try_timeout = 5s;
    dns::forwarder f{io.get_executor(), config};
    fake_context ctx;
    for (std::uint16_t i = 0; i < 3; ++i) send_query(f, ctx, guest_a, 100, dnsmasq::query(i, "q" + std::to_string(i) + ".example", wdns::type::a));
    send_query(f, ctx, guest_b, 100, dnsmasq::query(1, "b.example", wdns::type::a));
    CHECK(f.in_flight() == 4);
    f.port_removed(mac_a);
    CHECK(f.in_flight() == 1);
    CHECK(f.table_stats().cancelled == 3);
    // Its slots are free again: a new guest on that port may ask as many.
    for (std::uint16_t i = 0; i < 3; ++i) send_query(f, ctx, guest_a, 101, dnsmasq::query(i, "r" + std::to_string(i) + ".example", wdns::type::a));
    CHECK(f.in_flight() == 4);
}

// --- what is not a query for us ---------------------------------------------------------------------

TEST_CASE("dns/forwarder: takes only UDP to gateway:53, bad datagrams are counted drops") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    dns::forwarder f{io.get_executor(), config_for({silent.upstream()})};
    fake_context ctx;
    const auto message = dnsmasq::query(1, "x.example", wdns::type::a);

    // Another port, another address: not ours.
    CHECK(f.inspect(wire::parsed_frame::parse(query_frame(mac_a, ip_a, 1000, message, 5353)), ctx) == inspection::pass);
    CHECK(f.inspect(wire::parsed_frame::parse(query_frame(mac_a, ip_a, 1000, message, 53, {192, 0, 2, 1})), ctx) ==
          inspection::pass);
    // Another source MAC than the port's: the switch's to drop.
    CHECK(f.inspect(wire::parsed_frame::parse(query_frame(mac_b, ip_b, 1000, message)), ctx) == inspection::pass);

    // A broken UDP checksum.
    auto bad = query_frame(mac_a, ip_a, 1000, message);
    bad[nat::guest_headers_len + 6] ^= std::byte{0x55};
    CHECK(f.inspect(wire::parsed_frame::parse(bad), ctx) == inspection::drop);
    // A UDP length past the datagram.
    auto long_udp = query_frame(mac_a, ip_a, 1000, message);
    long_udp[nat::guest_headers_len + 4] = std::byte{0x7f};
    CHECK(f.inspect(wire::parsed_frame::parse(long_udp), ctx) == inspection::drop);
    // Not DNS at all: taken, counted, no reply, nothing relayed.
    const byte_vector junk{std::byte{1}, std::byte{2}, std::byte{3}};
    CHECK(f.inspect(wire::parsed_frame::parse(query_frame(mac_a, ip_a, 1000, junk)), ctx) == inspection::taken);
    const auto s = f.stats();
    CHECK(s.dropped_malformed == 2);
    CHECK(s.dropped_unreadable == 1);
    CHECK(s.forwarded == 0);
    CHECK(ctx.sent.empty());
}

// --- local names ----------------------------------------------------------------------------------

namespace {
dhcp::lease_event ack(wire::mac_address mac, wire::ipv4_address address, std::string_view hostname) {
    return dhcp::lease_event{dhcp::lease_event_kind::acknowledged, mac, address, hostname, {}};
}
std::optional<wire::ipv4_address> a_answer(const byte_vector& reply) {
    const auto r = wdns::repr::parse(reply);
    if (!r || r->answer_count != 1) return std::nullopt;
    return r->answers[0].address;
}
} // namespace

TEST_CASE("dns/forwarder: VM names from DHCP leases and host.<domain> are answered locally, A and PTR") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    dns::forwarder f{io.get_executor(), config_for({silent.upstream()})};
    fake_context ctx;
    ctx.leases[ip_a] = mac_a;
    f.observe_event(ack(mac_a, ip_a, "builder"));

    const auto ask = [&](std::uint16_t id, std::string_view name, std::uint16_t type) {
        ctx.sent.clear();
        CHECK(send_query(f, ctx, guest_b, 6000, dnsmasq::query(id, name, type)) == inspection::taken);
        REQUIRE(ctx.sent.size() == 1);
        CHECK(ctx.sent[0].port == port_b);
        return ctx.sent[0].dns(mac_b, ip_b, 6000);
    };
    const auto vm = ask(1, "builder.ankanet.internal", wdns::type::a);
    CHECK(id_of(vm) == 1);
    CHECK(a_answer(vm) == ip_a);
    const auto host = ask(2, "HOST.ankanet.internal", wdns::type::a);
    CHECK(a_answer(host) == gateway_ip);
    const auto missing = ask(3, "nobody.ankanet.internal", wdns::type::a);
    CHECK(rcode_of(missing) == wdns::rcode::nxdomain);

    const auto ptr = ask(4, "2.64.168.192.in-addr.arpa", wdns::type::ptr);
    const auto m = wdns::message::parse(ptr);
    REQUIRE(m);
    CHECK(m->header().ancount() == 1);
    bool found = false;
    for (const auto& rr : m->answers()) {
        CHECK(rr.type == wdns::type::ptr);
        std::size_t at = rr.rdata_offset;
        const auto target = wdns::name_view::read(wire::const_bytes{ptr}, at);
        REQUIRE(target);
        found = target->decode() == wdns::name::from_text("builder.ankanet.internal").value();
    }
    CHECK(found);
    const auto gw_ptr = ask(5, "1.64.168.192.in-addr.arpa", wdns::type::ptr);
    CHECK(wdns::message::parse(gw_ptr)->header().ancount() == 1);

    CHECK(f.stats().answered_locally == 5);
    CHECK(f.stats().forwarded == 0);
    io.run_for(20ms);
    CHECK(silent.received().empty()); // no name of ours leaks upstream

    // A RELEASE ends the name.
    f.observe_event(dhcp::lease_event{dhcp::lease_event_kind::released, mac_a, ip_a, "builder", {}});
    CHECK(rcode_of(ask(6, "builder.ankanet.internal", wdns::type::a)) == wdns::rcode::nxdomain);

    // A lease that expires (no event) loses its name when the lease authority no longer knows it.
    f.observe_event(ack(mac_a, ip_a, "builder"));
    CHECK(a_answer(ask(7, "builder.ankanet.internal", wdns::type::a)) == ip_a);
    ctx.leases.clear();
    ctx.time.steady += 2s;
    CHECK(rcode_of(ask(8, "builder.ankanet.internal", wdns::type::a)) == wdns::rcode::nxdomain);
    CHECK(f.stats().names_expired == 1);

    // A VM moving to another address takes its name along; an invalid host name names nothing.
    ctx.leases[ip_a] = mac_a;
    f.observe_event(ack(mac_a, ip_a, "mover"));
    ctx.leases.erase(ip_a);
    ctx.leases[wire::ipv4_address{192, 168, 64, 9}] = mac_a;
    f.observe_event(ack(mac_a, wire::ipv4_address{192, 168, 64, 9}, "mover"));
    CHECK(a_answer(ask(9, "mover.ankanet.internal", wdns::type::a)) == wire::ipv4_address{192, 168, 64, 9});
    f.observe_event(ack(mac_b, ip_b, "bad_name"));
    CHECK(rcode_of(ask(10, "bad_name.ankanet.internal", wdns::type::a)) == wdns::rcode::nxdomain);
}

// --- through a network ------------------------------------------------------------------------------

namespace {
struct manual_traits : default_network_traits {
    using clock_type = manual_clock;
};
using dns_network = basic_network<manual_traits, dns::forwarder>;

/// A service that reports a lease for every frame it is offered, as the DHCP service does.
struct announcer {
    template <class Ctx>
    bool handle(const wire::parsed_frame&, Ctx& ctx) {
        ctx.notify(dhcp::lease_event{dhcp::lease_event_kind::acknowledged, mac_a, ip_a, "announced", {}});
        return true;
    }
};

struct emitted {
    std::vector<std::pair<port_handle, byte_vector>> frames;
    void operator()(port_handle p, wire::const_bytes f) { frames.emplace_back(p, byte_vector(f.begin(), f.end())); }
};
} // namespace

TEST_CASE("dns/forwarder: in a basic_network, local answers leave with input() and upstream ones with flush()") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    network_config nc;
    dns_network net{nc, dns::forwarder{io.get_executor(), config_for({server.upstream()})}};
    const auto a = net.add_port("vm-a", port_mac::custom(mac_a));
    const auto b = net.add_port("vm-b", port_mac::custom(mac_b));
    REQUIRE(a);
    REQUIRE(b);
    auto& forwarder = net.service<dns::forwarder>();
    REQUIRE(forwarder.zone()->set_name(ip_b, "peer") == dns::name_status::added);

    emitted out;
    net.input(*a, query_frame(mac_a, ip_a, 7000, dnsmasq::query(77, "peer.ankanet.internal", wdns::type::a)),
              net.clock().now(), out);
    REQUIRE(out.frames.size() == 1);
    CHECK(out.frames[0].first == *a);
    CHECK(a_answer(guest_reply{*a, out.frames[0].second}.dns(mac_a, ip_a, 7000)) == ip_b);

    out.frames.clear();
    const auto message = dnsmasq::query(78, "www.x.test", wdns::type::a);
    net.input(*a, query_frame(mac_a, ip_a, 7001, message), net.clock().now(), out);
    CHECK(out.frames.empty()); // taken before the switch: vm-b sees nothing
    REQUIRE(pump(io, [&] { return forwarder.held_replies() == 1; }));
    net.flush(net.clock().now(), out);
    REQUIRE(out.frames.size() == 1);
    CHECK(out.frames[0].first == *a);
    const auto reply = guest_reply{*a, out.frames[0].second}.dns(mac_a, ip_a, 7001);
    CHECK(id_of(reply) == 78);
    CHECK(after_id(reply) == after_id(server.ask(message)));
    CHECK(net.stats().replies_dropped == 0);
}

TEST_CASE("dns/forwarder: the network hands services each other's events (observe_event)") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    using network = basic_network<manual_traits, announcer, dns::forwarder>;
    network net{network_config{}, announcer{}, dns::forwarder{io.get_executor(), config_for({silent.upstream()})}};
    const auto a = net.add_port("vm-a", port_mac::custom(mac_a));
    REQUIRE(a);
    emitted out;
    // Any frame for the gateway reaches announcer::handle, which reports a lease.
    net.input(*a, query_frame(mac_a, ip_a, 1, dnsmasq::query(1, "x", wdns::type::a), 9999), net.clock().now(), out);
    CHECK(net.service<dns::forwarder>().zone()->inspect([](const dns::local_zone& z) { return z.address_of("announced"); }) ==
          ip_a);
}

TEST_CASE("dns/forwarder: a DHCP lease with a host name is a name, until the lease expires") {
    boost::asio::io_context io;
    fake_upstream silent{io};
    dhcp::server_config server;
    server.server_address = gateway_ip;
    server.server_mac = gateway_mac;
    dhcp::lease_pool_config pool;
    pool.subnet = wire::ipv4_prefix{gateway_ip, 24};
    pool.first = wire::ipv4_address{192, 168, 64, 10};
    pool.last = wire::ipv4_address{192, 168, 64, 50};
    pool.lease_time = std::chrono::seconds{600};
    auto dhcp_service = dhcp::service::create(server, pool);
    REQUIRE(dhcp_service);
    using network = basic_network<manual_traits, dhcp::service, dns::forwarder>;
    network net{network_config{}, std::move(*dhcp_service), dns::forwarder{io.get_executor(), config_for({silent.upstream()})}};
    const auto a = net.add_port("vm-a", port_mac::custom(mac_a));
    REQUIRE(a);

    // DORA, the REQUEST carrying host name "webvm".
    emitted out;
    const auto discover = dhcp::discover_frame(mac_a, 0x1001);
    net.input(*a, discover.bytes(), net.clock().now(), out);
    REQUIRE(out.frames.size() == 1);
    const auto offer = dhcp::parse_server_reply(out.frames[0].second);
    REQUIRE(offer);
    auto request = dhcp::detail::client_message(mac_a, offer->xid, wire::dhcp::message_type::request);
    request.requested_ip = offer->yiaddr;
    request.server_id = offer->server_id;
    request.host_name = "webvm";
    out.frames.clear();
    net.input(*a, dhcp::build_client_frame(mac_a, request).bytes(), net.clock().now(), out);
    REQUIRE(out.frames.size() == 1);
    const auto leased = offer->yiaddr;

    const auto ask = [&](std::uint16_t id, std::string_view name, std::uint16_t type) {
        out.frames.clear();
        net.input(*a, query_frame(mac_a, leased, 8000, dnsmasq::query(id, name, type)), net.clock().now(), out);
        REQUIRE(out.frames.size() == 1);
        return guest_reply{*a, out.frames[0].second}.dns(mac_a, leased, 8000);
    };
    CHECK(a_answer(ask(1, "webvm.ankanet.internal", wdns::type::a)) == leased);
    CHECK(wdns::message::parse(ask(2, "10.64.168.192.in-addr.arpa", wdns::type::ptr))->header().ancount() ==
          (leased == wire::ipv4_address{192, 168, 64, 10} ? 1 : 0));

    // Ten minutes later the lease has run out (no event): the name goes with it.
    net.clock().advance(std::chrono::minutes{11});
    CHECK(rcode_of(ask(3, "webvm.ankanet.internal", wdns::type::a)) == wdns::rcode::nxdomain);
    CHECK(net.service<dns::forwarder>().stats().names_expired == 1);
}

TEST_CASE("dns/forwarder: a VM on a memory backend gets its upstream answer through the network's wakeup") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    using network = basic_network<default_network_traits, dns::forwarder>;
    network net{network_config{}, dns::forwarder{io.get_executor(), config_for({server.upstream()})}};
    auto link = backend::make_memory_link(io.get_executor(), 1500, 64);
    auto& vm = link.first;
    const auto port = net.attach("vm", std::move(link.second), port_mac::custom(mac_a));
    REQUIRE(port);

    const auto message = dnsmasq::query(0x6464, "www.x.test", wdns::type::a);
    REQUIRE_FALSE(vm.send(query_frame(mac_a, ip_a, 5454, message)));
    byte_vector buffer(backend::max_frame_len(backend::default_mtu));
    byte_vector got;
    REQUIRE(pump(io, [&] {
        if (const auto n = vm.try_receive(buffer); n) got.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*n));
        return !got.empty();
    }));
    const auto reply = guest_reply{*port, got}.dns(mac_a, ip_a, 5454);
    CHECK(id_of(reply) == 0x6464);
    CHECK(after_id(reply) == after_id(server.ask(message)));
    CHECK(net.service<dns::forwarder>().held_replies() == 0);

    // Stopped, the forwarder holds no sockets or timers: the io_context runs out of work.
    net.stop();
    net.service<dns::forwarder>().stop();
    io.restart();
    io.run_for(2s);
    CHECK(io.stopped());
}

// --- DNS over TCP ---------------------------------------------------------------------------------

namespace {
void write_message(tcp::socket& s, const byte_vector& m) {
    byte_vector framed(2);
    wire::store_be16(wire::mutable_bytes{framed}, 0, static_cast<std::uint16_t>(m.size()));
    framed.insert(framed.end(), m.begin(), m.end());
    boost::asio::write(s, boost::asio::buffer(framed));
}
byte_vector read_message(tcp::socket& s) {
    std::array<std::byte, 2> prefix{};
    boost::asio::read(s, boost::asio::buffer(prefix));
    byte_vector m(wire::load_be16(wire::const_bytes{prefix}, 0));
    boost::asio::read(s, boost::asio::buffer(m));
    return m;
}
} // namespace

TEST_CASE("dns/tcp_listener: two length-prefixed queries on one connection, one local, one forwarded") {
    dnsmasq server;
    REQUIRE_DNSMASQ(server);
    boost::asio::io_context io;
    auto config = config_for({server.upstream()});
    dns::forwarder f{io.get_executor(), config};
    f.observe_event(ack(mac_a, ip_a, "builder"));
    dns::tcp_listener listener{io.get_executor(), f.zone(), config.upstreams};
    CHECK(listener.endpoint().address() == boost::asio::ip::address_v4::loopback());
    CHECK(listener.endpoint().port() != 0);
    std::thread runner{[&] { io.run_for(10s); }};

    {
        boost::asio::io_context client_io;
        tcp::socket client{client_io};
        client.connect(listener.endpoint());
        const auto local = dnsmasq::query(0x0a0a, "builder.ankanet.internal", wdns::type::a);
        const auto remote = dnsmasq::query(0x0b0b, "www.x.test", wdns::type::aaaa);
        write_message(client, local);
        write_message(client, remote);
        const auto first = read_message(client);
        const auto second = read_message(client);
        CHECK(id_of(first) == 0x0a0a);
        CHECK(a_answer(first) == ip_a);
        CHECK(id_of(second) == 0x0b0b);
        CHECK(rcode_of(second) == wdns::rcode::no_error);
        CHECK(wdns::packet<wire::const_bytes>{wire::const_bytes{second}}.ancount() == 1);
        CHECK(wdns::first_question(second)->qtype == wdns::type::aaaa);
        // A third on the same connection, after the others.
        write_message(client, dnsmasq::query(0x0c0c, "missing.gone.test", wdns::type::a));
        const auto third = read_message(client);
        CHECK(id_of(third) == 0x0c0c);
        CHECK(rcode_of(third) == wdns::rcode::nxdomain);
    }
    const auto s = listener.stats();
    CHECK(s.queries == 3);
    CHECK(s.answered_locally == 1);
    CHECK(s.forwarded == 2);
    io.stop();
    runner.join();
    listener.close(); // on this thread, now that the executor's is done
}

TEST_CASE("dns/tcp_listener: SERVFAIL when no upstream answers, idle connections and extra ones are closed") {
    boost::asio::io_context io;
    // A TCP upstream that accepts and never answers.
    tcp::acceptor mute{io, tcp::endpoint{boost::asio::ip::address_v4::loopback(), 0}};
    std::vector<tcp::socket> held;
    std::function<void()> accept = [&] {
        mute.async_accept([&](boost::system::error_code ec, tcp::socket s) {
            if (ec) return;
            held.push_back(std::move(s));
            accept();
        });
    };
    accept();
    dns::upstream_config upstreams;
    upstreams.servers = {dns::upstream{boost::asio::ip::address_v4::loopback(), mute.local_endpoint().port()}};
    dns::tcp_listener_config tc;
    tc.upstream_timeout = 200ms;
    tc.idle_timeout = 300ms;
    tc.max_connections = 2;
    auto zone = std::make_shared<dns::shared_zone>(dns::local_zone::make({}).value());
    dns::tcp_listener listener{io.get_executor(), zone, upstreams, tc};
    std::thread runner{[&] { io.run_for(10s); }};

    boost::asio::io_context client_io;
    tcp::socket client{client_io};
    client.connect(listener.endpoint());
    write_message(client, dnsmasq::query(0x5151, "slow.example", wdns::type::a));
    const auto reply = read_message(client);
    CHECK(id_of(reply) == 0x5151);
    CHECK(rcode_of(reply) == wdns::rcode::servfail);

    // Two more connections: the third is beyond max_connections and closed at once.
    tcp::socket second{client_io}, third{client_io};
    second.connect(listener.endpoint());
    std::this_thread::sleep_for(50ms);
    third.connect(listener.endpoint());
    std::array<std::byte, 1> one{};
    boost::system::error_code ec;
    third.read_some(boost::asio::buffer(one), ec);
    CHECK(ec); // closed by the listener

    // An idle connection is closed after idle_timeout.
    client.read_some(boost::asio::buffer(one), ec);
    CHECK(ec);
    REQUIRE(pump_until([&] { return listener.stats().idle_closed >= 1; }));
    const auto s = listener.stats();
    CHECK(s.servfail == 1);
    CHECK(s.refused_connections == 1);
    CHECK(s.idle_closed >= 1);
    io.stop();
    runner.join();
    listener.close(); // on this thread, now that the executor's is done
}
