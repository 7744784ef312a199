// ankanetd's control socket: a unix stream socket that answers control requests, one JSON line
// each (control_protocol.hpp), on the daemon's own io_context.
//
// Theory of operation. open() takes the path only when it is free: its directory must exist; a
// file that is not a socket is refused and left as it is; a socket someone answers on (connect
// succeeds) is another live server's and is refused; a socket no one answers (connect refused) is
// a crashed daemon's leftover and is replaced. The socket file is created with mode 0600 (set on
// the socket before bind, so there is no moment when another user could connect), so only the
// daemon's user — and root — can control it. Each refusal comes with one line saying why.
//
// Each connection is read line by line (a line ends at '\n'; a '\r' before it is dropped; blank
// lines are skipped) and each line is answered with handle_request() and '\n', in order. Lines
// are answered a read's worth at a time and nothing more is read until the answers are written,
// so a client that does not read its answers stops being read, and holds no more than one read's
// answers in memory. A line longer than max_line bytes gets an error response and the connection
// is closed. At most max_connections are served at once; one more is closed as soon as it is
// accepted. At end of stream a last line without '\n' is answered too, then the connection closes.
//
// Single-threaded: everything runs on the executor's thread (the daemon's io_context); the target
// is called there. close() (and the destructor) stops listening, closes every connection and
// removes the socket file, if it is still the one this server created.
#pragma once

#include "control_protocol.hpp"

#include <ankanet/backend/detail/unix_socket_file.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace ankanetd {

class control_server {
public:
    using executor_type = boost::asio::any_io_executor;
    using protocol_type = boost::asio::local::stream_protocol;

    /// The longest request line, without its newline.
    static constexpr std::size_t max_line = 64 * 1024;
    /// The most connections served at once.
    static constexpr std::size_t max_connections = 16;

    /// Listens at `path` for requests to `target` (which must outlive the server, or its close()).
    /// @return the server; or nullopt and `why`, one line: the directory is missing, a file that
    /// is not a socket is there, another server answers there, or socket/bind/listen failed.
    [[nodiscard]] static std::optional<control_server> open(executor_type executor, const std::filesystem::path& path,
                                                            control_target& target, std::string& why) {
        namespace detail = ankanet::backend::detail;
        const auto refuse = [&](std::string_view reason) -> std::optional<control_server> {
            why = fmt::format("control socket {}: {}", path.native(), reason);
            return std::nullopt;
        };
        ::sockaddr_un address{};
        if (!detail::fill_unix_address(path, address)) {
            return refuse(fmt::format("the path must be 1 to {} bytes", sizeof(address.sun_path) - 1));
        }
        const auto directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path{"."};
        std::error_code ec;
        if (!std::filesystem::is_directory(directory, ec)) {
            return refuse(fmt::format("its directory {} does not exist", directory.native()));
        }
        if (const auto stale = detail::clear_stale_socket(path, SOCK_STREAM)) {
            if (stale == std::errc::file_exists) return refuse("a file that is not a socket is there (left as it is)");
            if (stale == std::errc::address_in_use) return refuse("another server answers there (is another ankanetd running?)");
            return refuse(stale.message());
        }

        auto state = std::make_shared<state_type>(executor, target);
        boost::system::error_code error;
        state->acceptor.open(protocol_type{}, error);
        if (error) return refuse(fmt::format("socket: {}", error.message()));
        // The socket file takes the socket's mode (less the umask) at bind: set it first.
        if (::fchmod(state->acceptor.native_handle(), S_IRUSR | S_IWUSR) != 0) {
            return refuse(fmt::format("fchmod: {}", detail::last_errno().message()));
        }
        state->acceptor.bind(protocol_type::endpoint{path.native()}, error);
        if (error) return refuse(fmt::format("bind: {}", error.message()));
        state->socket_file.remember(path);
        if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0) {
            const auto chmod_error = detail::last_errno();
            state->socket_file.remove();
            return refuse(fmt::format("chmod 0600: {}", chmod_error.message()));
        }
        state->acceptor.listen(boost::asio::socket_base::max_listen_connections, error);
        if (error) {
            state->socket_file.remove();
            return refuse(fmt::format("listen: {}", error.message()));
        }
        accept_next(state);
        return control_server{std::move(state)};
    }

    control_server(control_server&&) noexcept = default;
    control_server& operator=(control_server&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    control_server(const control_server&) = delete;
    control_server& operator=(const control_server&) = delete;
    ~control_server() { close(); }

    /// The connections served now.
    std::size_t connections() const noexcept { return state_ ? state_->connections.size() : 0; }
    /// Connections closed at once because max_connections were being served.
    std::uint64_t refused() const noexcept { return state_ ? state_->refused : 0; }
    /// Requests answered (error responses included).
    std::uint64_t requests() const noexcept { return state_ ? state_->requests : 0; }

    /// Stops listening, closes every connection and removes the socket file. Idempotent.
    void close() noexcept {
        if (!state_ || state_->closed) return;
        state_->closed = true;
        boost::system::error_code ignored;
        state_->acceptor.close(ignored);
        state_->retry.cancel();
        for (const auto& c : state_->connections) c->socket.close(ignored);
        state_->connections.clear();
        state_->socket_file.remove();
    }

private:
    struct connection {
        explicit connection(protocol_type::socket s) : socket(std::move(s)) {}
        protocol_type::socket socket;
        std::array<char, 16 * 1024> chunk{};
        std::string pending; ///< read, not yet a whole line
        std::string answers; ///< being written
        bool closing = false;
    };
    using connection_list = std::list<std::shared_ptr<connection>>;

    struct state_type {
        state_type(const executor_type& executor, control_target& t) : acceptor(executor), retry(executor), target(&t) {}
        protocol_type::acceptor acceptor;
        boost::asio::steady_timer retry;
        control_target* target;
        ankanet::backend::detail::unix_socket_file socket_file;
        connection_list connections;
        std::uint64_t refused = 0;
        std::uint64_t requests = 0;
        bool closed = false;
    };

    explicit control_server(std::shared_ptr<state_type> state) : state_(std::move(state)) {}

    static void accept_next(const std::shared_ptr<state_type>& state) {
        state->acceptor.async_accept([state](const boost::system::error_code& ec, protocol_type::socket socket) {
            if (state->closed) return;
            if (ec) {
                if (ec == boost::asio::error::operation_aborted) return;
                // Out of descriptors or memory: the connection stays in the backlog and the
                // listener readable, so accepting again at once would spin. Pause instead. Other
                // errors concern only the connection that failed.
                if (ec == boost::asio::error::no_descriptors || ec == boost::asio::error::no_memory ||
                    ec == boost::asio::error::no_buffer_space ||
                    ec == boost::system::error_code{ENFILE, boost::system::system_category()}) {
                    state->retry.expires_after(std::chrono::milliseconds{100});
                    state->retry.async_wait([state](const boost::system::error_code& wait_error) {
                        if (!wait_error && !state->closed) accept_next(state);
                    });
                    return;
                }
                accept_next(state);
                return;
            }
            if (state->connections.size() >= max_connections) {
                ++state->refused;
                boost::system::error_code ignored;
                socket.close(ignored);
            } else {
                auto c = std::make_shared<connection>(std::move(socket));
                state->connections.push_back(c);
                read_next(state, c);
            }
            accept_next(state);
        });
    }

    static void finish(const std::shared_ptr<state_type>& state, const std::shared_ptr<connection>& c) {
        boost::system::error_code ignored;
        c->socket.close(ignored);
        state->connections.remove(c);
    }

    static void read_next(const std::shared_ptr<state_type>& state, const std::shared_ptr<connection>& c) {
        c->socket.async_read_some(boost::asio::buffer(c->chunk), [state, c](const boost::system::error_code& ec, std::size_t n) {
            if (state->closed) return;
            if (ec) {
                // End of stream (or an error): a last line without its newline is answered too.
                if (ec == boost::asio::error::eof && !blank(c->pending)) {
                    answer(state, *c, c->pending);
                    c->pending.clear();
                    c->closing = true;
                    write_answers(state, c);
                    return;
                }
                finish(state, c);
                return;
            }
            take(state, *c, std::string_view{c->chunk.data(), n});
            if (c->answers.empty() && !c->closing) {
                read_next(state, c);
            } else {
                write_answers(state, c);
            }
        });
    }

    static bool blank(std::string_view line) noexcept {
        return line.find_first_not_of(" \t\r") == std::string_view::npos;
    }

    /// Answers `line` into the connection's answers.
    static void answer(const std::shared_ptr<state_type>& state, connection& c, std::string_view line) {
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (blank(line)) return;
        ++state->requests;
        c.answers += handle_request(line, *state->target);
        c.answers += '\n';
    }

    /// Splits what was read into lines and answers each whole one.
    static void take(const std::shared_ptr<state_type>& state, connection& c, std::string_view data) {
        while (!data.empty() && !c.closing) {
            const auto newline = data.find('\n');
            const auto piece = data.substr(0, newline);
            if (c.pending.size() + piece.size() > max_line) {
                ++state->requests;
                c.answers += control_detail::error_response(
                    nullptr, fmt::format("the request line is longer than {} bytes; closing the connection", max_line));
                c.answers += '\n';
                c.pending.clear();
                c.closing = true;
                return;
            }
            if (newline == std::string_view::npos) {
                c.pending.append(piece);
                return;
            }
            if (c.pending.empty()) {
                answer(state, c, piece);
            } else {
                c.pending.append(piece);
                answer(state, c, c.pending);
                c.pending.clear();
            }
            data.remove_prefix(newline + 1);
        }
    }

    static void write_answers(const std::shared_ptr<state_type>& state, const std::shared_ptr<connection>& c) {
        if (c->answers.empty()) {
            finish(state, c);
            return;
        }
        boost::asio::async_write(c->socket, boost::asio::buffer(c->answers), [state, c](const boost::system::error_code& ec, std::size_t) {
            if (state->closed) return;
            c->answers.clear();
            if (ec || c->closing) {
                if (!ec) {
                    boost::system::error_code ignored;
                    c->socket.shutdown(protocol_type::socket::shutdown_send, ignored);
                }
                finish(state, c);
                return;
            }
            read_next(state, c);
        });
    }

    std::shared_ptr<state_type> state_;
};

} // namespace ankanetd
