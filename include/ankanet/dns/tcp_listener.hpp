/// @file
/// ankanet::dns::tcp_listener — DNS over TCP for guests, on a host-side loopback socket.
///
/// Theory of operation.
///  * Guests ask gateway:53 over TCP when a UDP reply came back truncated (TC), or because they
///    prefer it. The NAT's TCP translator carries their connections to a host endpoint; this
///    listener is that endpoint: a TCP socket on 127.0.0.1 at an ephemeral port (endpoint() says
///    which), so the translator maps gateway:53/TCP there and no privileged port is needed.
///  * Framing is RFC 7766's (and RFC 1035 §4.2.2's): each message is preceded by its length in two
///    bytes. A connection carries any number of queries, answered in order.
///  * Each query goes first to the local zone the UDP forwarder shares (shared_zone: VM names and
///    `host.<domain>`); what it does not answer is relayed raw — same bytes, same ID, since the
///    connection to the upstream is ours alone — to the upstream resolvers over TCP, one
///    connection per query, each upstream in turn with `upstream_timeout` per try; the reply is
///    relayed raw too. When every upstream fails the guest gets SERVFAIL (its ID, its question,
///    RCODE 2). A message that is not a query (the zone says drop) closes the connection.
///  * Bounded: at most max_connections at a time (more are closed at once, counted); a connection
///    idle for idle_timeout between queries (or slow to send one) is closed. Messages are at most
///    65535 bytes by the framing.
///  * Names are kept current by the UDP forwarder (lease events and lease expiry); this listener
///    only reads the zone.
///  * Threads: the coroutines run on the executor given to the constructor; give it one thread (or
///    a strand). The state lives in a shared block the coroutines keep alive; close() (and the
///    destructor) closes the acceptor and every connection.
#pragma once

#include <ankanet/dns/forwarder.hpp>
#include <ankanet/dns/local_zone.hpp>
#include <ankanet/dns/upstream.hpp>
#include <ankanet/wire/bytes.hpp>
#include <ankanet/wire/dns.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

namespace ankanet::dns {

/// How a tcp_listener is set up.
struct tcp_listener_config {
    boost::asio::ip::tcp::endpoint listen{boost::asio::ip::address_v4::loopback(), 0}; ///< port 0: ephemeral
    std::size_t max_connections = 64; ///< max connections
    std::chrono::milliseconds idle_timeout{10000};    ///< between queries on one connection
    std::chrono::milliseconds upstream_timeout{2000}; ///< per upstream try (connect, send, answer)
    std::size_t max_tries = 3;                        ///< upstreams tried per query at most
};

/// What a tcp_listener has done.
struct tcp_listener_counters {
    std::uint64_t connections = 0;         ///< accepted
    std::uint64_t refused_connections = 0; ///< closed at once: max_connections were open
    std::uint64_t idle_closed = 0;         ///< closed for idleness
    std::uint64_t queries = 0; ///< queries
    std::uint64_t answered_locally = 0; ///< answered locally
    std::uint64_t forwarded = 0;           ///< relayed upstream and answered
    std::uint64_t upstream_failures = 0;   ///< upstream tries that failed (refused, timed out, bad reply)
    std::uint64_t servfail = 0; ///< servfail
    std::uint64_t dropped_unreadable = 0;  ///< not a query: the connection was closed
};

/// DNS over TCP for the guests; see the theory of operation.
class tcp_listener {
public:
    using tcp = boost::asio::ip::tcp; ///< the TCP type

    /// Listens on `config.listen` (throws boost::system::system_error when it cannot), answering
    /// from `zone` and relaying to `upstreams`.
    tcp_listener(boost::asio::any_io_executor executor, std::shared_ptr<shared_zone> zone, upstream_config upstreams,
                 tcp_listener_config config = {})
        : state_(std::make_shared<state>(executor, std::move(zone), std::move(upstreams), config)) {
        state_->acceptor.open(config.listen.protocol());
        state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
        state_->acceptor.bind(config.listen);
        state_->acceptor.listen();
        state_->endpoint = state_->acceptor.local_endpoint();
        boost::asio::co_spawn(executor, accept_loop(state_), boost::asio::detached);
    }
    /// Move-constructs (memberwise).
    tcp_listener(tcp_listener&&) noexcept = default;
    /// Move assignment.
    tcp_listener& operator=(tcp_listener&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    tcp_listener(const tcp_listener&) = delete;
    tcp_listener& operator=(const tcp_listener&) = delete;
    ~tcp_listener() { close(); }

    /// Where it listens: what the NAT maps gateway:53/TCP to.
    tcp::endpoint endpoint() const { return state_->endpoint; }

    /// Stops accepting and closes every connection. Call it on the executor's thread, or when
    /// that does not run (the destructor does the same).
    void close() {
        if (!state_) return;
        const std::lock_guard lock{state_->mutex};
        boost::system::error_code ignored;
        state_->acceptor.close(ignored);
        for (const auto& socket : state_->sessions) socket->close(ignored);
    }

    /// What it counted so far.
    tcp_listener_counters stats() const {
        const std::lock_guard lock{state_->mutex};
        return state_->stats;
    }
    /// Connections open now.
    std::size_t connections() const {
        const std::lock_guard lock{state_->mutex};
        return state_->sessions.size();
    }

private:
    using awaitable = boost::asio::awaitable<void>;

    struct state {
        state(boost::asio::any_io_executor ex, std::shared_ptr<shared_zone> z, upstream_config up, tcp_listener_config c)
            : executor(ex), acceptor(ex), zone(std::move(z)), upstreams(std::move(up)), config(c) {}
        boost::asio::any_io_executor executor;
        tcp::acceptor acceptor;
        tcp::endpoint endpoint;
        std::shared_ptr<shared_zone> zone;
        upstream_source upstreams;
        tcp_listener_config config;
        std::mutex mutex; // sessions, stats, upstreams
        std::set<std::shared_ptr<tcp::socket>> sessions;
        tcp_listener_counters stats;
    };

    template <class F>
    static void count(state& s, F&& f) {
        const std::lock_guard lock{s.mutex};
        f(s.stats);
    }

    static awaitable accept_loop(std::shared_ptr<state> s) {
        for (;;) {
            auto [ec, socket] = co_await s->acceptor.async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
            if (ec) {
                if (!s->acceptor.is_open()) co_return;
                continue; // a connection that failed before accept (reset): the listener goes on
            }
            auto session_socket = std::make_shared<tcp::socket>(std::move(socket));
            {
                const std::lock_guard lock{s->mutex};
                if (!s->acceptor.is_open()) co_return;
                if (s->sessions.size() >= s->config.max_connections) {
                    ++s->stats.refused_connections;
                    boost::system::error_code ignored;
                    session_socket->close(ignored);
                    continue;
                }
                ++s->stats.connections;
                s->sessions.insert(session_socket);
            }
            boost::asio::co_spawn(s->executor, session(s, session_socket), boost::asio::detached);
        }
    }

    /// One guest connection: length-prefixed queries, answered in order, until it closes or idles.
    static awaitable session(std::shared_ptr<state> s, std::shared_ptr<tcp::socket> socket) {
        using boost::asio::as_tuple;
        using boost::asio::use_awaitable;
        boost::asio::steady_timer idle{s->executor};
        bool idled = false;
        std::vector<std::byte> query(65535);
        std::array<std::byte, max_reply_len> local{};
        for (;;) {
            // The watchdog closes the socket if no whole query arrives in time.
            idle.expires_after(s->config.idle_timeout);
            idle.async_wait([socket, &idled](boost::system::error_code ec) {
                if (ec) return;
                idled = true;
                boost::system::error_code ignored;
                socket->close(ignored);
            });
            std::array<std::byte, 2> prefix{};
            auto [ec1, n1] = co_await boost::asio::async_read(*socket, boost::asio::buffer(prefix), as_tuple(use_awaitable));
            if (ec1) break;
            const std::size_t length = wire::load_be16(wire::const_bytes{prefix}, 0);
            if (length == 0) break;
            auto [ec2, n2] = co_await boost::asio::async_read(*socket, boost::asio::buffer(query.data(), length),
                                                              as_tuple(use_awaitable));
            if (ec2) break;
            idle.cancel();
            const wire::const_bytes message{query.data(), length};
            count(*s, [](auto& c) { ++c.queries; });

            std::vector<std::byte> reply;
            const zone_answer answer = s->zone->answer(message, local);
            if (answer.disposition == zone_disposition::drop) {
                count(*s, [](auto& c) { ++c.dropped_unreadable; });
                break;
            }
            if (answer.disposition == zone_disposition::reply) {
                count(*s, [](auto& c) { ++c.answered_locally; });
                reply.assign(local.begin(), local.begin() + static_cast<std::ptrdiff_t>(answer.length));
            } else {
                reply = co_await relay(s, message);
                if (!reply.empty()) {
                    count(*s, [](auto& c) { ++c.forwarded; });
                } else {
                    count(*s, [](auto& c) { ++c.servfail; });
                    reply = servfail(message);
                    if (reply.empty()) break;
                }
            }
            std::array<std::byte, 2> out_prefix{};
            wire::store_be16(wire::mutable_bytes{out_prefix}, 0, static_cast<std::uint16_t>(reply.size()));
            const std::array<boost::asio::const_buffer, 2> out{boost::asio::buffer(out_prefix), boost::asio::buffer(reply)};
            auto [ec3, n3] = co_await boost::asio::async_write(*socket, out, as_tuple(use_awaitable));
            if (ec3) break;
        }
        idle.cancel();
        const std::lock_guard lock{s->mutex};
        if (idled) ++s->stats.idle_closed;
        boost::system::error_code ignored;
        socket->close(ignored);
        s->sessions.erase(socket);
    }

    /// SERVFAIL for `query` (its ID and question), or empty when it has no readable question.
    static std::vector<std::byte> servfail(wire::const_bytes query) {
        const auto parsed = wire::dns::message::parse(query);
        if (!parsed) return {};
        const auto question = parsed->first_question();
        if (!question) return {};
        std::optional<std::uint16_t> edns;
        if (const auto opt = parsed->opt(); opt && *opt) edns = (*opt)->udp_payload_size();
        std::vector<std::byte> out(max_reply_len);
        const std::size_t n = detail::write_servfail(out, parsed->header().id(), parsed->header().flags(),
                                                     wire::dns::question::from(*question), edns);
        out.resize(n);
        return out;
    }

    /// The upstreams' TCP answer to `query`, tried in turn; empty when none answered.
    static boost::asio::awaitable<std::vector<std::byte>> relay(std::shared_ptr<state> s, wire::const_bytes query) {
        using boost::asio::as_tuple;
        using boost::asio::use_awaitable;
        std::vector<upstream> servers;
        {
            const std::lock_guard lock{s->mutex};
            servers = s->upstreams.current(std::chrono::steady_clock::now());
        }
        const std::uint16_t id = wire::load_be16(query, 0);
        std::array<std::byte, 2> prefix{};
        wire::store_be16(wire::mutable_bytes{prefix}, 0, static_cast<std::uint16_t>(query.size()));
        for (std::size_t i = 0; i < servers.size() && i < s->config.max_tries; ++i) {
            auto upstream_socket = std::make_shared<tcp::socket>(s->executor);
            boost::asio::steady_timer deadline{s->executor};
            deadline.expires_after(s->config.upstream_timeout);
            deadline.async_wait([upstream_socket](boost::system::error_code ec) {
                if (ec) return;
                boost::system::error_code ignored;
                upstream_socket->close(ignored);
            });
            std::vector<std::byte> reply;
            const tcp::endpoint to{servers[i].address, servers[i].port};
            auto [ec1] = co_await upstream_socket->async_connect(to, as_tuple(use_awaitable));
            if (!ec1) {
                const std::array<boost::asio::const_buffer, 2> out{boost::asio::buffer(prefix),
                                                                   boost::asio::buffer(query.data(), query.size())};
                auto [ec2, n2] = co_await boost::asio::async_write(*upstream_socket, out, as_tuple(use_awaitable));
                std::array<std::byte, 2> in_prefix{};
                if (!ec2) {
                    auto [ec3, n3] = co_await boost::asio::async_read(*upstream_socket, boost::asio::buffer(in_prefix),
                                                                      as_tuple(use_awaitable));
                    if (!ec3) {
                        reply.resize(wire::load_be16(wire::const_bytes{in_prefix}, 0));
                        auto [ec4, n4] = co_await boost::asio::async_read(*upstream_socket, boost::asio::buffer(reply),
                                                                          as_tuple(use_awaitable));
                        if (ec4) reply.clear();
                    }
                }
            }
            deadline.cancel();
            boost::system::error_code ignored;
            upstream_socket->close(ignored);
            // Only an answer to this query: a response with its ID.
            const wire::dns::packet<wire::const_bytes> header{wire::const_bytes{reply}};
            if (!reply.empty() && !header.check_len() && header.qr() && header.id() == id) co_return reply;
            count(*s, [](auto& c) { ++c.upstream_failures; });
        }
        co_return std::vector<std::byte>{};
    }

    std::shared_ptr<state> state_;
};

} // namespace ankanet::dns
