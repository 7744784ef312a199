// nat::tcp_translator on real loopback sockets: a scripted guest (frames built in the test) talks
// through the translator to servers the test runs on 127.0.0.1, reached at the gateway's address.
#include <ankanet/nat/tcp.hpp>

#include <ankanet/backend/memory.hpp>
#include <ankanet/network.hpp>

#include "tcp_support.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

using namespace ankanet;
using namespace ankanet::nat;
using namespace ankanet::nat::test;
using namespace std::chrono_literals;
namespace tcp = ankanet::wire::tcp;

namespace {

using translator = tcp_translator<egress_allow_list>;
static_assert(gateway_service<translator>);
static_assert(gateway_service<tcp_translator<runtime_egress>>);
// The optional hooks basic_network looks for (a mismatch would silently skip them).
static_assert(requires(translator& t, mac_address mac, std::function<void()> wake) {
    t.port_removed(mac);
    t.bind_wakeup(wake);
});

egress_allow_list loopback_only() { return egress_allow_list{{wire::ipv4_prefix{wire::ipv4_address{127, 0, 0, 0}, 8}}}; }

tcp_limits limits() {
    tcp_limits l;
    l.capacity = 64;
    l.max_vms = 8;
    return l;
}

/// A context as basic_network gives services: frames to a port land in `inbox`.
struct fake_ctx {
    std::optional<port_handle> from;
    std::vector<std::vector<std::byte>>* inbox;
    void send_to(port_handle, wire::const_bytes bytes) { inbox->emplace_back(bytes.begin(), bytes.end()); }
    void answer(wire::const_bytes bytes) { inbox->emplace_back(bytes.begin(), bytes.end()); }
    std::optional<port_handle> port() const { return from; }
    mac_address port_mac() const { return guest{}.mac; }
    network_time now() const { return real_clock{}.now(); }
    std::string_view port_name() const { return "vm1"; }
    std::vector<std::string>* reports = nullptr; ///< refusals the translator reported
    template <class Event>
    void notify(const Event& e) {
        if constexpr (requires { e.reason; }) {
            if (reports != nullptr) reports->emplace_back(e.reason);
        }
    }
};

/// A listening socket on 127.0.0.1, port chosen by the kernel.
struct listener {
    int fd = -1;
    std::uint16_t port = 0;
    listener() {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 8) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~listener() { ::close(fd); }
};

/// A guest TCP client made of frames: handshake, data both ways with its own window, FIN.
struct scripted_client {
    translator& nat;
    boost::asio::io_context& io;
    guest g;
    port_handle vm = port_handle::make(1, 1);
    std::vector<std::vector<std::byte>> inbox;
    std::vector<std::string> reports; ///< refused flows the translator reported
    bool flush_requested = false;

    std::uint8_t my_shift = 2;   // the window scale the guest offers
    std::uint8_t peer_shift = 0; // the translator's
    bool established = false;
    bool rst = false;
    bool fin_received = false;
    std::vector<std::byte> received;
    std::vector<std::byte> to_send;
    std::uint32_t iss = 7000;
    std::uint32_t snd_una = 0;
    std::uint32_t snd_nxt = 0;
    std::uint32_t peer_window = 0;
    bool fin_sent = false;
    bool fin_acked = false;
    std::size_t frames_seen = 0;
    std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();

    /// In a network: frames go to `send_frame` and come from `collect` (into inbox) instead.
    std::function<void(const std::vector<std::byte>&)> send_frame;
    std::function<void(std::vector<std::vector<std::byte>>&)> collect;

    scripted_client(translator& t, boost::asio::io_context& context, std::uint16_t remote_port, bool bind = true)
        : nat(t), io(context) {
        g.remote_port = remote_port;
        g.seq = iss;
        g.window = 65535;
        if (bind) nat.bind_wakeup([this] { flush_requested = true; });
    }

    void deliver(const std::vector<std::byte>& frame) {
        if (send_frame) {
            send_frame(frame);
            return;
        }
        fake_ctx ctx{vm, &inbox, &reports};
        const auto parsed = wire::parsed_frame::parse(frame);
        REQUIRE(nat.inspect(parsed, ctx) == inspection::taken);
        nat.end_burst(ctx); // each frame a burst of its own, as basic_network::input() does
    }

    void syn() {
        deliver(g.segment(tcp::flag::syn, {}, std::nullopt, 1460, my_shift));
        snd_una = snd_nxt = iss + 1;
    }

    /// One turn: run the io_context a little, flush, read what came, answer, send what fits.
    void turn() {
        io.run_for(1ms);
        if (collect) collect(inbox);
        if (flush_requested) {
            flush_requested = false;
            fake_ctx ctx{std::nullopt, &inbox, &reports};
            while (nat.release_held(ctx, 16) == 16) {}
        }
        bool ack_needed = false;
        auto frames = std::move(inbox);
        inbox.clear();
        for (const auto& bytes : frames) {
            ++frames_seen;
            out_frame f{vm, bytes};
            const auto seg = f.tcp();
            REQUIRE(seg);
            if (seg->flags.rst()) {
                rst = true;
                continue;
            }
            if (seg->flags.syn() && seg->flags.ack()) {
                if (!established) {
                    peer_shift = seg->window_scale.value_or(0);
                    g.ack = seg->seq_number + 1;
                    g.seq = iss + 1;
                    established = true;
                    peer_window = seg->window;
                }
                ack_needed = true;
                continue;
            }
            if (seg->flags.ack()) {
                const std::uint32_t ack = seg->ack_number;
                if (static_cast<std::int32_t>(ack - snd_una) > 0 && static_cast<std::int32_t>(ack - snd_nxt) <= 0) {
                    snd_una = ack;
                    last_progress = std::chrono::steady_clock::now();
                    if (fin_sent && ack == snd_nxt) fin_acked = true;
                }
                peer_window = std::uint32_t{seg->window} << peer_shift;
            }
            if (seg->payload_len > 0 || seg->flags.fin()) {
                if (seg->seq_number == g.ack) {
                    const auto p = f.payload();
                    received.insert(received.end(), p.begin(), p.end());
                    g.ack += static_cast<std::uint32_t>(p.size());
                    if (seg->flags.fin()) {
                        g.ack += 1;
                        fin_received = true;
                    }
                }
                ack_needed = true;
            }
        }
        if (!established) return;
        // Send data the translator's window allows; go back to snd_una when nothing moves.
        const std::size_t sent_bytes = snd_una - (iss + 1);
        if (std::chrono::steady_clock::now() - last_progress > 200ms && snd_nxt != snd_una) {
            snd_nxt = snd_una;
            if (fin_sent && !fin_acked) fin_sent = false;
            last_progress = std::chrono::steady_clock::now();
        }
        (void)sent_bytes;
        while (!fin_sent) {
            const std::size_t offset = snd_nxt - (iss + 1);
            if (offset >= to_send.size()) break;
            const std::uint32_t in_flight = snd_nxt - snd_una;
            if (in_flight >= peer_window) break;
            const std::size_t len = std::min<std::size_t>({1400, to_send.size() - offset, peer_window - in_flight});
            deliver(g.segment(tcp::flag::ack | tcp::flag::psh, wire::const_bytes{to_send}.subspan(offset, len), snd_nxt));
            snd_nxt += static_cast<std::uint32_t>(len);
            ack_needed = false;
        }
        if (!fin_sent && close_when_sent && snd_una == iss + 1 + to_send.size() && snd_nxt == snd_una) {
            deliver(g.segment(tcp::flag::fin | tcp::flag::ack, {}, snd_nxt));
            snd_nxt += 1;
            fin_sent = true;
            ack_needed = false;
        }
        if (ack_needed) deliver(g.segment(tcp::flag::ack, {}, snd_nxt));
    }

    template <class Done>
    bool run_until(Done done, std::chrono::seconds limit = 20s) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > end) return false;
            turn();
        }
        return true;
    }

    bool close_when_sent = false;
};

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
    std::vector<std::byte> v(n);
    std::uint32_t x = seed;
    for (auto& b : v) {
        x = x * 1664525u + 1013904223u;
        b = std::byte{static_cast<std::uint8_t>(x >> 24)};
    }
    return v;
}

} // namespace

namespace {

void transfer_both_ways(bool use_peek_offset) {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, loopback_only(), limits(),
                   asio_tcp_sockets{io.get_executor(), limits().capacity, use_peek_offset}};
    listener server;
    const auto to_guest = pattern(1 << 20, 1);
    std::vector<std::byte> from_guest;
    std::atomic<bool> server_done{false};
    std::thread server_thread([&] {
        const int c = ::accept(server.fd, nullptr, nullptr);
        std::thread writer([&] {
            std::size_t off = 0;
            while (off < to_guest.size()) {
                const ssize_t n = ::send(c, to_guest.data() + off, to_guest.size() - off, MSG_NOSIGNAL);
                if (n <= 0) break;
                off += static_cast<std::size_t>(n);
            }
            ::shutdown(c, SHUT_WR);
        });
        std::vector<std::byte> buf(65536);
        for (;;) {
            const ssize_t n = ::recv(c, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            from_guest.insert(from_guest.end(), buf.begin(), buf.begin() + n);
        }
        writer.join();
        ::close(c);
        server_done = true;
    });

    scripted_client client{nat, io, server.port};
    client.to_send = pattern(1 << 20, 2);
    client.close_when_sent = true;
    client.syn();
    const bool finished = client.run_until([&] {
        return client.fin_received && client.fin_acked && nat.flows() == 0;
    });
    server_thread.join();
    CHECK(finished);
    CHECK_FALSE(client.rst);
    CHECK(client.received.size() == to_guest.size());
    CHECK(client.received == to_guest);
    CHECK(from_guest.size() == client.to_send.size());
    CHECK(from_guest == client.to_send);
    CHECK(nat.flows() == 0);
    if (!use_peek_offset) CHECK(nat.engine().sockets().max_peek_offset() == asio_tcp_sockets::fallback_peek_limit);
    const auto stats = nat.stats();
    CHECK(stats.engine.flows_closed == 1);
    CHECK(stats.engine.bytes_to_host == 1u << 20);
    std::printf("tcp_translator: bytes per flow %.1f (engine %.1f + socket slot %zu), retransmits %llu, short sends %llu\n",
                nat.bytes_per_flow(), nat.engine().bytes_per_flow(), asio_tcp_sockets::bytes_per_flow(),
                static_cast<unsigned long long>(stats.engine.retransmits),
                static_cast<unsigned long long>(stats.engine.short_sends));
    CHECK(nat.bytes_per_flow() <= 256);
}

} // namespace

TEST_CASE("real sockets: 1 MiB each way through the gateway address to a 127.0.0.1 server, then both FINs") {
    transfer_both_ways(true);
}

TEST_CASE("real sockets: the same without SO_PEEK_OFF (peek from the head, skip what was sent)") {
    transfer_both_ways(false);
}

TEST_CASE("real sockets: a closed port answers the guest's SYN with an RST") {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, loopback_only(), limits()};
    std::uint16_t closed_port = 0;
    {
        listener l; // bound, then closed: nothing listens there now
        closed_port = l.port;
    }
    scripted_client client{nat, io, closed_port};
    client.syn();
    CHECK(client.run_until([&] { return client.rst; }, 5s));
    CHECK_FALSE(client.established);
    CHECK(nat.flows() == 0);
    CHECK(nat.stats().engine.connect_refused == 1);
}

TEST_CASE("real sockets: the egress policy refuses a destination off loopback with an RST, no connect") {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, loopback_only(), limits()};
    scripted_client client{nat, io, 80};
    client.g.remote = wire::ipv4_address{10, 255, 255, 1};
    client.syn();
    REQUIRE(client.inbox.size() == 1);
    client.turn();
    CHECK(client.rst);
    CHECK(nat.stats().engine.refused_egress == 1);
    REQUIRE(client.reports.size() == 1); // reported to the network's observer, for the log
    CHECK(client.reports[0] == "egress policy");
    CHECK(nat.flows() == 0);
}

TEST_CASE("real sockets: a guest RST reaches the host peer as a reset") {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, loopback_only(), limits()};
    listener server;
    std::atomic<int> server_errno{0};
    std::atomic<bool> accepted{false};
    std::thread server_thread([&] {
        const int c = ::accept(server.fd, nullptr, nullptr);
        accepted = true;
        char buf[16];
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        server_errno = n < 0 ? errno : 0;
        ::close(c);
    });
    scripted_client client{nat, io, server.port};
    client.syn();
    REQUIRE(client.run_until([&] { return client.established && accepted.load(); }, 5s));
    client.deliver(client.g.segment(tcp::flag::rst, {}, client.snd_nxt));
    server_thread.join();
    CHECK(server_errno == ECONNRESET);
    CHECK(nat.flows() == 0);
}

TEST_CASE("real sockets: a mapped gateway port goes where the map says") {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, egress_allow_list{}, limits()}; // egress: nothing
    listener dns;
    nat.map_gateway_port(53, boost::asio::ip::tcp::endpoint{boost::asio::ip::address_v4::loopback(), dns.port});
    std::thread server_thread([&] {
        const int c = ::accept(dns.fd, nullptr, nullptr);
        const char reply[] = "hello";
        ::send(c, reply, 5, MSG_NOSIGNAL);
        ::close(c);
    });
    scripted_client client{nat, io, 53};
    client.close_when_sent = true;
    client.syn();
    const bool done = client.run_until([&] { return client.fin_received && nat.flows() == 0; }, 5s);
    server_thread.join();
    CHECK(done);
    CHECK(client.received.size() == 5);
    // Another gateway port is put to the egress policy, which allows nothing here.
    scripted_client other{nat, io, 54};
    other.g.port = 40001;
    other.syn();
    other.turn();
    CHECK(other.rst);
}

TEST_CASE("real sockets in a basic_network: a memory-backed VM fetches 1 MiB from a 127.0.0.1 server") {
    boost::asio::io_context io;
    using network = basic_network<default_network_traits, translator>;
    network net{network_config{}, translator{io.get_executor(), translation_config{}, loopback_only(), limits()}};
    auto link = backend::make_memory_link(io.get_executor(), 1500, 2048);
    auto& guest_end = link.first;
    scripted_client client{net.service<translator>(), io, 0, false};
    REQUIRE(net.attach("vm1", std::move(link.second), port_mac::custom(client.g.mac)));

    listener server;
    const auto to_guest = pattern(1 << 20, 3);
    std::thread server_thread([&] {
        const int c = ::accept(server.fd, nullptr, nullptr);
        std::size_t off = 0;
        while (off < to_guest.size()) {
            const ssize_t n = ::send(c, to_guest.data() + off, to_guest.size() - off, MSG_NOSIGNAL);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        ::shutdown(c, SHUT_WR);
        char buf[64];
        while (::recv(c, buf, sizeof buf, 0) > 0) {}
        ::close(c);
    });
    client.g.remote_port = server.port;
    client.send_frame = [&](const std::vector<std::byte>& frame) { REQUIRE_FALSE(guest_end.send(frame)); };
    client.collect = [&](std::vector<std::vector<std::byte>>& into) {
        std::vector<std::byte> buffer(backend::max_frame_len(backend::default_mtu));
        for (auto got = guest_end.try_receive(buffer); got; got = guest_end.try_receive(buffer)) {
            into.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(*got));
        }
    };
    client.close_when_sent = true;
    client.syn();
    const bool done = client.run_until([&] {
        return client.fin_received && client.fin_acked && net.service<translator>().flows() == 0;
    });
    server_thread.join();
    CHECK(done);
    CHECK(client.received == to_guest);
    CHECK(net.service<translator>().stats().engine.flows_closed == 1);
    net.stop();
    io.run_for(10ms);
}

TEST_CASE("real sockets: a host peer that reads late holds the guest back by the window, nothing lost") {
    boost::asio::io_context io;
    translator nat{io.get_executor(), translation_config{}, loopback_only(), limits()};
    listener server;
    std::vector<std::byte> from_guest;
    std::thread server_thread([&] {
        const int c = ::accept(server.fd, nullptr, nullptr);
        std::this_thread::sleep_for(500ms); // the send and receive buffers fill meanwhile
        std::vector<std::byte> buf(65536);
        for (;;) {
            const ssize_t n = ::recv(c, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            from_guest.insert(from_guest.end(), buf.begin(), buf.begin() + n);
        }
        ::close(c);
    });
    scripted_client client{nat, io, server.port};
    client.to_send = pattern(8 << 20, 4);
    client.close_when_sent = true;
    client.syn();
    const bool done = client.run_until([&] { return client.fin_acked; }, 30s);
    // The host closes once it has read everything: then the flow ends.
    client.run_until([&] { return client.fin_received && nat.flows() == 0; }, 10s);
    server_thread.join();
    CHECK(done);
    CHECK(from_guest.size() == client.to_send.size());
    CHECK(from_guest == client.to_send);
    const auto stats = nat.stats().engine;
    // The kernel could not take everything at once: short sends or a closed window held the guest.
    std::printf("late reader: short sends %llu\n", static_cast<unsigned long long>(stats.short_sends));
    CHECK(nat.flows() == 0);
}
