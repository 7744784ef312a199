// tcp_rr — TCP request/response and connect/request/response/close rates, the RR and CRR cells of
// bench/peers/run.sh (a guest in a namespace, behind ankanetd, pasta, slirp4netns or a veth,
// against a server on the host).
//
//   tcp_rr server ADDR PORT [MAX_SECONDS]   echo server (poll(2), one thread); exits after
//                                           MAX_SECONDS (default 900) or on SIGTERM/SIGINT
//   tcp_rr rr HOST PORT SECONDS             one connection, 1-byte request, 1-byte response, repeated
//   tcp_rr crr HOST PORT SECONDS            per transaction: connect, 1-byte request, 1-byte
//                                           response, the server closes, the client closes
//
// Protocol: every byte the client sends is echoed. 'r' keeps the connection open, 'c' asks the
// server to close it after the echo. In crr the server closes first, so the TIME_WAIT lands on the
// host (where Linux reuses loopback ones) and not in the guest, whose 28 000 ephemeral ports would
// otherwise run out over a few runs at several thousand connections a second.
//
// Bounds: a client stops at SECONDS (1..60) or after 10 000 000 transactions, whichever comes
// first; crr gives up after 1 000 failed connections. The server holds at most 1024 connections.
// TCP_NODELAY on every socket. Every blocking call has a 2 s timeout (SO_RCVTIMEO/SO_SNDTIMEO).
//
// Output, one line on stdout:
//   rr transactions=N seconds=S per_s=R mean_rtt_us=M errors=E
//   crr transactions=N seconds=S per_s=R mean_us=M errors=E
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::uint64_t max_transactions = 10'000'000;
constexpr std::uint64_t max_crr_errors = 1'000;
constexpr std::size_t max_server_connections = 1024;

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void on_signal(int) { stop_requested = 1; }

std::optional<unsigned long> parse_number(const char* text, unsigned long low, unsigned long high) {
    char* end = nullptr;
    errno = 0;
    const unsigned long value = std::strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high) return std::nullopt;
    return value;
}

std::optional<sockaddr_in> parse_endpoint(const char* host, const char* port_text) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) return std::nullopt;
    const auto port = parse_number(port_text, 1, 65535);
    if (!port) return std::nullopt;
    address.sin_port = htons(static_cast<std::uint16_t>(*port));
    return address;
}

void set_options(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval timeout{};
    timeout.tv_sec = 2;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

int connect_to(const sockaddr_in& address) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_options(fd);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// One request byte out, its echo back.
bool exchange(int fd, char request) {
    if (send(fd, &request, 1, MSG_NOSIGNAL) != 1) return false;
    char response = 0;
    return recv(fd, &response, 1, 0) == 1 && response == request;
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

int run_server(const sockaddr_in& address, unsigned long max_seconds) {
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listener < 0) { std::perror("tcp_rr: socket"); return 1; }
    const int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 || listen(listener, 1024) != 0) {
        std::perror("tcp_rr: bind/listen");
        return 1;
    }
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::fprintf(stderr, "tcp_rr: listening\n");
    const auto deadline = clock_type::now() + std::chrono::seconds(max_seconds);
    std::vector<pollfd> fds{{listener, POLLIN, 0}};
    while (stop_requested == 0 && clock_type::now() < deadline) {
        if (poll(fds.data(), fds.size(), 200) < 0) {
            if (errno == EINTR) continue;
            std::perror("tcp_rr: poll");
            return 1;
        }
        // Connections first (index 1..), then the listener, so erasing does not disturb the scan.
        for (std::size_t i = fds.size(); i-- > 1;) {
            if (fds[i].revents == 0) continue;
            char buffer[256];
            const ssize_t n = recv(fds[i].fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;   // EWOULDBLOCK == EAGAIN on Linux
            bool close_it = n <= 0;
            if (n > 0) {
                const auto length = static_cast<std::size_t>(n);
                if (send(fds[i].fd, buffer, length, MSG_NOSIGNAL) != n) close_it = true;
                if (std::string_view{buffer, length}.find('c') != std::string_view::npos) close_it = true;
            }
            if (close_it) {
                close(fds[i].fd);
                fds.erase(fds.begin() + static_cast<std::ptrdiff_t>(i));
            }
        }
        if ((fds[0].revents & POLLIN) != 0) {
            for (int accepted = 0; accepted < 64; ++accepted) {
                const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) break;
                if (fds.size() > max_server_connections) { close(fd); continue; }
                set_options(fd);
                fds.push_back({fd, POLLIN, 0});
            }
        }
    }
    for (const auto& p : fds) close(p.fd);
    return 0;
}

int run_rr(const sockaddr_in& address, unsigned long seconds) {
    const int fd = connect_to(address);
    if (fd < 0) { std::perror("tcp_rr: connect"); return 1; }
    std::uint64_t transactions = 0;
    std::uint64_t errors = 0;
    const auto start = clock_type::now();
    const auto deadline = start + std::chrono::seconds(seconds);
    while (transactions < max_transactions && clock_type::now() < deadline) {
        if (!exchange(fd, 'r')) { ++errors; break; }
        ++transactions;
    }
    const double elapsed = seconds_since(start);
    close(fd);
    const double per_s = static_cast<double>(transactions) / elapsed;
    const double mean_us = transactions == 0 ? 0.0 : elapsed * 1e6 / static_cast<double>(transactions);
    std::printf("rr transactions=%llu seconds=%.3f per_s=%.1f mean_rtt_us=%.2f errors=%llu\n",
                static_cast<unsigned long long>(transactions), elapsed, per_s, mean_us,
                static_cast<unsigned long long>(errors));
    return transactions == 0 ? 1 : 0;
}

int run_crr(const sockaddr_in& address, unsigned long seconds) {
    std::uint64_t transactions = 0;
    std::uint64_t errors = 0;
    const auto start = clock_type::now();
    const auto deadline = start + std::chrono::seconds(seconds);
    while (transactions < max_transactions && errors < max_crr_errors && clock_type::now() < deadline) {
        const int fd = connect_to(address);
        if (fd < 0) { ++errors; continue; }
        bool ok = exchange(fd, 'c');
        char rest = 0;
        if (ok) ok = recv(fd, &rest, 1, 0) == 0;   // the server's FIN
        close(fd);
        if (ok) ++transactions; else ++errors;
    }
    const double elapsed = seconds_since(start);
    const double per_s = static_cast<double>(transactions) / elapsed;
    const double mean_us = transactions == 0 ? 0.0 : elapsed * 1e6 / static_cast<double>(transactions);
    std::printf("crr transactions=%llu seconds=%.3f per_s=%.1f mean_us=%.2f errors=%llu\n",
                static_cast<unsigned long long>(transactions), elapsed, per_s, mean_us,
                static_cast<unsigned long long>(errors));
    return transactions == 0 ? 1 : 0;
}

int usage() {
    std::fputs("usage: tcp_rr server ADDR PORT [MAX_SECONDS]\n"
               "       tcp_rr rr HOST PORT SECONDS\n"
               "       tcp_rr crr HOST PORT SECONDS\n",
               stderr);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 4) return usage();
    const std::string_view mode = argv[1];
    const auto address = parse_endpoint(argv[2], argv[3]);
    if (!address) return usage();
    if (mode == "server") {
        unsigned long max_seconds = 900;
        if (argc == 5) {
            const auto value = parse_number(argv[4], 1, 86'400);
            if (!value) return usage();
            max_seconds = *value;
        } else if (argc != 4) {
            return usage();
        }
        return run_server(*address, max_seconds);
    }
    if (argc != 5) return usage();
    const auto seconds = parse_number(argv[4], 1, 60);
    if (!seconds) return usage();
    if (mode == "rr") return run_rr(*address, *seconds);
    if (mode == "crr") return run_crr(*address, *seconds);
    return usage();
}
