#include <ankanet/detail/port_holder.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using ankanet::detail::describe_port_holder;
using ankanet::detail::port_protocol;
using ankanet::wire::ipv4_address;

namespace {

/// A socket closed at the end of the scope.
struct socket_fd {
    int fd = -1;
    explicit socket_fd(int domain, int type) : fd(::socket(domain, type | SOCK_CLOEXEC, 0)) {}
    socket_fd(const socket_fd&) = delete;
    socket_fd& operator=(const socket_fd&) = delete;
    ~socket_fd() {
        if (fd >= 0) ::close(fd);
    }
};

/// Binds `s` to the IPv4 `address` and an ephemeral port, and returns the port (0 on failure).
std::uint16_t bind_v4(const socket_fd& s, ipv4_address address) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(address.to_u32());
    sin.sin_port = 0;
    if (::bind(s.fd, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0) return 0;
    socklen_t length = sizeof sin;
    if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&sin), &length) != 0) return 0;
    return ntohs(sin.sin_port);
}

std::string own_name() {
    std::ifstream comm{"/proc/self/comm"};
    std::string name;
    std::getline(comm, name);
    return name;
}

std::string own_description() { return "pid " + std::to_string(::getpid()) + " (" + own_name() + ")"; }

const ipv4_address loopback = ipv4_address::loopback();

} // namespace

TEST_CASE("a TCP listener on 127.0.0.1 is named, with this process's pid and name") {
    socket_fd listener{AF_INET, SOCK_STREAM};
    REQUIRE(listener.fd >= 0);
    const auto port = bind_v4(listener, loopback);
    REQUIRE(port != 0);
    // Bound but not listening: no TCP holder yet.
    CHECK(describe_port_holder(port_protocol::tcp, loopback, port).find(own_description()) == std::string::npos);
    REQUIRE(::listen(listener.fd, 4) == 0);

    CHECK(describe_port_holder(port_protocol::tcp, loopback, port) == own_description());
    // Asking about the wildcard finds a listener on any address.
    CHECK(describe_port_holder(port_protocol::tcp, ipv4_address::any(), port) == own_description());
    // Another address of the loopback net is not held by a listener on 127.0.0.1 alone.
    CHECK(describe_port_holder(port_protocol::tcp, ipv4_address{127, 0, 0, 2}, port).empty());
    // Nor is the UDP port of the same number held by us.
    CHECK(describe_port_holder(port_protocol::udp, loopback, port).find(own_description()) == std::string::npos);
}

TEST_CASE("a TCP listener on the wildcard address holds the port on 127.0.0.1") {
    socket_fd listener{AF_INET, SOCK_STREAM};
    REQUIRE(listener.fd >= 0);
    const auto port = bind_v4(listener, ipv4_address::any());
    REQUIRE(port != 0);
    REQUIRE(::listen(listener.fd, 4) == 0);
    CHECK(describe_port_holder(port_protocol::tcp, loopback, port) == own_description());
    CHECK(describe_port_holder(port_protocol::tcp, ipv4_address{127, 0, 0, 2}, port) == own_description());
}

TEST_CASE("a dual-stack TCP listener on [::] holds the IPv4 port") {
    socket_fd listener{AF_INET6, SOCK_STREAM};
    if (listener.fd < 0) {
        WARN("SKIPPED: no IPv6 sockets here");
        return;
    }
    int v6only = 0;
    REQUIRE(::setsockopt(listener.fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) == 0);
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_any;
    if (::bind(listener.fd, reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6) != 0) {
        WARN("SKIPPED: cannot bind [::] here (IPv6 disabled?)");
        return;
    }
    socklen_t length = sizeof sin6;
    REQUIRE(::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&sin6), &length) == 0);
    const auto port = ntohs(sin6.sin6_port);
    REQUIRE(::listen(listener.fd, 4) == 0);
    CHECK(describe_port_holder(port_protocol::tcp, loopback, port) == own_description());
}

TEST_CASE("a bound UDP socket is named") {
    socket_fd udp{AF_INET, SOCK_DGRAM};
    REQUIRE(udp.fd >= 0);
    const auto port = bind_v4(udp, loopback);
    REQUIRE(port != 0);
    CHECK(describe_port_holder(port_protocol::udp, loopback, port) == own_description());
    CHECK(describe_port_holder(port_protocol::udp, ipv4_address::any(), port) == own_description());
    CHECK(describe_port_holder(port_protocol::udp, ipv4_address{127, 0, 0, 2}, port).empty());
    CHECK(describe_port_holder(port_protocol::tcp, loopback, port).find(own_description()) == std::string::npos);
}

TEST_CASE("a socket shared with a child process names both, joined by a comma") {
    socket_fd listener{AF_INET, SOCK_STREAM};
    REQUIRE(listener.fd >= 0);
    const auto port = bind_v4(listener, loopback);
    REQUIRE(port != 0);
    REQUIRE(::listen(listener.fd, 4) == 0);
    int gate[2] = {-1, -1};
    REQUIRE(::pipe(gate) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // Holds the inherited listener until the parent closes the pipe (or 30 s pass).
        ::close(gate[1]);
        ::alarm(30);
        char byte = 0;
        (void)::read(gate[0], &byte, 1);
        ::_exit(0);
    }
    ::close(gate[0]);
    const auto description = describe_port_holder(port_protocol::tcp, loopback, port);
    ::close(gate[1]);
    int status = 0;
    ::waitpid(child, &status, 0);

    const std::string name = own_name();
    const std::string parent = "pid " + std::to_string(::getpid()) + " (" + name + ")";
    const std::string forked = "pid " + std::to_string(child) + " (" + name + ")";
    CHECK(description.find(parent) != std::string::npos);
    CHECK(description.find(forked) != std::string::npos);
    CHECK(description.find(", ") != std::string::npos);
    CHECK(description.size() == parent.size() + 2 + forked.size());
}

TEST_CASE("a port nothing holds gives an empty description") {
    std::uint16_t port = 0;
    {
        socket_fd probe{AF_INET, SOCK_STREAM};
        REQUIRE(probe.fd >= 0);
        port = bind_v4(probe, loopback);
        REQUIRE(port != 0);
    } // closed: the ephemeral port is free again (nothing else in the test run takes it)
    CHECK(describe_port_holder(port_protocol::tcp, loopback, port).empty());
    CHECK(describe_port_holder(port_protocol::udp, loopback, port).empty());
}

TEST_CASE("the /proc/net address and socket-link parsers") {
    namespace impl = ankanet::detail::port_holder_impl;
    // The kernel prints each 32-bit word from memory: 127.0.0.1 is "0100007F" on a little-endian
    // machine and "7F000001" on a big-endian one; either way the bytes are 7F 00 00 01 in memory.
    const std::uint32_t loopback_in_memory = htonl(0x7f000001u);
    char hex[9] = {};
    std::snprintf(hex, sizeof hex, "%08X", loopback_in_memory);
    CHECK(impl::address_holds(hex, loopback));
    CHECK(!impl::address_holds(hex, ipv4_address{127, 0, 0, 2}));
    CHECK(impl::address_holds(hex, ipv4_address::any()));
    CHECK(impl::address_holds("00000000", ipv4_address{10, 0, 0, 1}));
    CHECK(impl::address_holds("00000000000000000000000000000000", loopback));
    char mapped[33] = {};
    std::snprintf(mapped, sizeof mapped, "0000000000000000%08X%08X", htonl(0xffffu), loopback_in_memory);
    CHECK(impl::address_holds(mapped, loopback));
    CHECK(!impl::address_holds(mapped, ipv4_address{127, 0, 0, 2}));
    CHECK(!impl::address_holds("00000000000000000000000001000000", loopback)); // ::1
    CHECK(!impl::address_holds("0100007", loopback));
    CHECK(!impl::address_holds("0100007G", loopback));

    CHECK(impl::socket_inode("socket:[12345]") == 12345);
    CHECK(impl::socket_inode("socket:[]") == 0);
    CHECK(impl::socket_inode("socket:[12x]") == 0);
    CHECK(impl::socket_inode("pipe:[12345]") == 0);
    CHECK(impl::socket_inode("/dev/null") == 0);
}
