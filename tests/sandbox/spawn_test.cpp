#include <ankanet/sandbox/spawn.hpp>

#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <catch2/catch.hpp>

#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>

using namespace ankanet;

namespace {

/// A waitpid() status from a real child that runs `body` and then exits.
template <class Body>
int status_of(Body body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        body();
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
}

#define REQUIRE_NETNS_ENVIRONMENT()                                                                 \
    const std::string missing_requirement = test::missing_netns_requirements();                     \
    ANKANET_REQUIRE_ENVIRONMENT(missing_requirement.empty(), "spawn tests need " << missing_requirement)

sandbox::spawn_options options_for(std::vector<std::string> command) {
    sandbox::spawn_options o;
    o.command = std::move(command);
    o.mac = wire::mac_address{{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}};
    return o;
}

} // namespace

TEST_CASE("sandbox shell_status: the exit code, or 128 + N for signal N, as a shell says") {
    CHECK(sandbox::shell_status(status_of([] { ::_exit(7); })) == 7);
    CHECK(sandbox::shell_status(status_of([] {})) == 0);
    CHECK(sandbox::shell_status(status_of([] { ::raise(SIGKILL); })) == 128 + SIGKILL);
}

TEST_CASE("sandbox find_program: a name with a slash as given, else the first executable on the path") {
    CHECK(sandbox::find_program("./x/y", "/usr/bin") == std::optional<std::string>{"./x/y"});
    const auto sh = sandbox::find_program("sh", "/nonexistent:/usr/bin:/bin");
    REQUIRE(sh);
    CHECK((*sh == "/usr/bin/sh" || *sh == "/bin/sh"));
    CHECK_FALSE(sandbox::find_program("sh", "/nonexistent"));
    CHECK_FALSE(sandbox::find_program("no-such-program-anywhere", "/usr/bin:/bin"));
    CHECK_FALSE(sandbox::find_program("", "/usr/bin"));
    CHECK_FALSE(sandbox::find_program("passwd", "/etc")); // a file, but not executable
}

TEST_CASE("sandbox spawn refuses what cannot work before it forks") {
    std::string why;
    CHECK(sandbox::spawn(options_for({}), &why).error() == std::errc::invalid_argument);
    CHECK(why == "no command to run");
    auto o = options_for({"true"});
    o.interface_name = "a-name-far-too-long-for-linux";
    CHECK(sandbox::spawn(o, &why).error() == std::errc::invalid_argument);
    o = options_for({"true"});
    o.tap.mtu = 100;
    CHECK(sandbox::spawn(o, &why).error() == std::errc::invalid_argument);
    CHECK(sandbox::spawn(options_for({"no-such-program-anywhere"}), &why).error() == std::errc::no_such_file_or_directory);
    CHECK(why == "no-such-program-anywhere: command not found");
}

TEST_CASE("sandbox spawn: the child's TAP comes back by SCM_RIGHTS, configure() lets the command run") {
    REQUIRE_NETNS_ENVIRONMENT();
    // The command checks what configure() set: its address, netmask and default route.
    auto o = options_for({"sh", "-c",
                          "ip -4 -o addr show eth1 | grep -q 'inet 10.7.0.5/16' && ip route | grep -q 'default via 10.7.0.1 dev eth1' "
                          "&& ip link show lo | grep -q UP && exit 42"});
    o.interface_name = "eth1";
    o.tap.mtu = 9000;
    std::string why;
    auto child = sandbox::spawn(o, &why);
    REQUIRE(child);
    const int tap = child->release_tap();
    REQUIRE(tap >= 0);
    CHECK(child->release_tap() == -1);
    ::ifreq request{};
    REQUIRE(::ioctl(tap, TUNGETIFF, &request) == 0); // a tun/tap descriptor, attached to the child's eth1
    CHECK(std::string{request.ifr_name} == "eth1");
    CHECK((request.ifr_flags & IFF_TAP) != 0);
    CHECK(child->try_wait() == std::nullopt); // waiting for its address
    CHECK_FALSE(child->configure({wire::ipv4_prefix{wire::ipv4_address{10, 7, 0, 5}, 16}, wire::ipv4_address{10, 7, 0, 1}}));
    CHECK(child->try_wait(true) == 42);
    ::close(tap);
}

TEST_CASE("sandbox spawn: a command that cannot be executed is reported at configure(), 126 as a shell says") {
    REQUIRE_NETNS_ENVIRONMENT();
    auto o = options_for({"/etc/passwd"});
    auto child = sandbox::spawn(o);
    REQUIRE(child);
    const auto ec = child->configure({wire::ipv4_prefix{wire::ipv4_address{10, 7, 0, 5}, 16}, wire::ipv4_address{10, 7, 0, 1}});
    CHECK(ec == std::errc::permission_denied);
    CHECK(child->failed_step() == sandbox::child_step::exec);
    CHECK(child->try_wait(true) == 126);
}

TEST_CASE("sandbox spawn: a child dropped before configure() is killed and reaped, its TAP gone with it") {
    REQUIRE_NETNS_ENVIRONMENT();
    pid_t pid = -1;
    {
        auto child = sandbox::spawn(options_for({"sleep", "30"}));
        REQUIRE(child);
        pid = child->pid();
        CHECK(::kill(pid, 0) == 0);
    }
    CHECK(::kill(pid, 0) == -1); // reaped: no such process
}
