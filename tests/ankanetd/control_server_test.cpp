#include <ankanetd/control_server.hpp>
#include <ankanetd/ctl.hpp>

#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using json = nlohmann::json;
namespace fs = std::filesystem;
namespace fwd = ankanet::forward;
using ankanet::test::temp_dir;

namespace {

class fake_target final : public ankanetd::control_target {
public:
    fwd::table table;
    std::vector<ankanetd::vm_status> vm_list;

    std::vector<ankanetd::forward_status> forwards() override {
        std::vector<ankanetd::forward_status> out;
        for (const auto& e : table.entries()) out.push_back({e.id, e.rule, 3});
        return out;
    }
    ankanet::result<fwd::rule_id> add_forward(const fwd::rule& r, std::string& why) override { return table.add(r, &why); }
    std::error_code remove_forward(fwd::rule_id id, std::string& why) override {
        if (table.remove(id)) return {};
        why = "no forward " + std::to_string(id);
        return fwd::forward_errc::no_such_rule;
    }
    std::vector<ankanetd::vm_status> vms() override { return vm_list; }
    std::error_code set_link(std::string_view vm, bool up, std::string& why) override {
        for (auto& v : vm_list) {
            if (v.name == vm) {
                v.link_up = up;
                return {};
            }
        }
        why = "no VM " + std::string{vm};
        return std::make_error_code(std::errc::no_such_device);
    }
};

/// What a server test needs: a directory, the socket's path in it, an io_context, a target.
struct control_scene {
    temp_dir dir;
    fs::path path = dir.path / "control.sock";
    boost::asio::io_context io;
    fake_target target;
    std::string why;
};

::sockaddr_un unix_address(const fs::path& path) {
    ::sockaddr_un address{};
    REQUIRE(ankanet::backend::detail::fill_unix_address(path, address));
    return address;
}

/// A connected client socket (blocking connect: the server's backlog takes it before accept).
int connect_to(const fs::path& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const auto address = unix_address(path);
    REQUIRE(::connect(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0);
    return fd;
}

/// A unix stream socket bound at `path` (its file stays when it is closed, as a crashed server's).
int bound_socket(const fs::path& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    const auto address = unix_address(path);
    REQUIRE(::bind(fd, reinterpret_cast<const ::sockaddr*>(&address), sizeof(address)) == 0);
    return fd;
}

void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

/// Runs the io_context until `lines` whole lines came from `fd`, or end of stream (`eof` set),
/// or 5 s passed.
std::vector<std::string> read_lines(boost::asio::io_context& io, int fd, std::size_t lines, bool* eof = nullptr) {
    std::string data;
    std::vector<std::string> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (out.size() < lines && std::chrono::steady_clock::now() < deadline) {
        io.poll();
        io.restart();
        char chunk[4096];
        const auto n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0) {
            if (eof != nullptr) *eof = true;
            break;
        }
        if (n < 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds{1});
            continue;
        }
        data.append(chunk, static_cast<std::size_t>(n));
        for (auto newline = data.find('\n'); newline != std::string::npos; newline = data.find('\n')) {
            out.push_back(data.substr(0, newline));
            data.erase(0, newline + 1);
        }
    }
    return out;
}

/// Runs the io_context until `fd` sees end of stream (true) or 5 s passed (false).
bool closed_by_server(boost::asio::io_context& io, int fd) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (std::chrono::steady_clock::now() < deadline) {
        io.poll();
        io.restart();
        char chunk[4096];
        const auto n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    return false;
}

std::string slurp(std::FILE* file) {
    std::fflush(file);
    std::rewind(file);
    std::string text;
    char chunk[512];
    for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, file)) > 0;) text.append(chunk, n);
    return text;
}

} // namespace

TEST_CASE("requests on one connection are answered in order, and the socket is 0600") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    auto server = ankanetd::control_server::open(io.get_executor(), path, target, why);
    REQUIRE(server);
    struct ::stat info {};
    REQUIRE(::lstat(path.c_str(), &info) == 0);
    REQUIRE(S_ISSOCK(info.st_mode));
    REQUIRE((info.st_mode & 0777) == 0600);

    const int fd = connect_to(path);
    // Two requests in one write, a third split across writes with CRLF, and a blank line between.
    send_all(fd, "{\"id\":1,\"command\":\"forward.add\",\"forward\":\"8080:80\"}\n\n{\"id\":2,\"command\":\"forward.list\"}\n{\"id\":3,");
    auto lines = read_lines(io, fd, 2);
    send_all(fd, "\"command\":\"vm.list\"}\r\n");
    const auto more = read_lines(io, fd, 1);
    lines.insert(lines.end(), more.begin(), more.end());
    REQUIRE(lines.size() == 3);
    const auto first = json::parse(lines[0]);
    const auto second = json::parse(lines[1]);
    const auto third = json::parse(lines[2]);
    CHECK(first["id"] == 1);
    CHECK(first["forward"]["text"] == "tcp:127.0.0.1:8080:80");
    CHECK(second["id"] == 2);
    CHECK(second["forwards"].size() == 1);
    CHECK(third["id"] == 3);
    CHECK(third["vms"] == json::array());
    CHECK(server->requests() == 3);
    CHECK(server->connections() == 1);

    // A last request without its newline is answered at end of stream, then the connection closes.
    send_all(fd, R"({"id":4,"command":"forward.list"})");
    ::shutdown(fd, SHUT_WR);
    bool eof = false;
    lines = read_lines(io, fd, 2, &eof);
    REQUIRE(lines.size() == 1);
    CHECK(json::parse(lines[0])["id"] == 4);
    CHECK(eof);
    ::close(fd);
    io.poll();
    CHECK(server->connections() == 0);

    server->close();
    CHECK(!fs::exists(fs::symlink_status(path)));
}

TEST_CASE("a line over 64 KiB is refused and the connection closed") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    auto server = ankanetd::control_server::open(io.get_executor(), path, target, why);
    REQUIRE(server);

    // Exactly 64 KiB is still a line.
    {
        const int fd = connect_to(path);
        std::string line = R"({"id":1,"command":"vm.list","pad":")";
        line += std::string(ankanetd::control_server::max_line - line.size() - 2, 'x') + "\"}";
        REQUIRE(line.size() == ankanetd::control_server::max_line);
        send_all(fd, line + "\n");
        const auto lines = read_lines(io, fd, 1);
        REQUIRE(lines.size() == 1);
        CHECK(json::parse(lines[0])["error"].get<std::string>().find("unknown field \"pad\"") != std::string::npos);
        ::close(fd);
    }
    // One byte more is not.
    const int fd = connect_to(path);
    send_all(fd, std::string(ankanetd::control_server::max_line + 1, ' '));
    bool eof = false;
    const auto lines = read_lines(io, fd, 2, &eof);
    REQUIRE(lines.size() == 1);
    const auto response = json::parse(lines[0]);
    CHECK(response["ok"] == false);
    CHECK(response["error"] == "the request line is longer than 65536 bytes; closing the connection");
    CHECK(eof);
    ::close(fd);
    io.poll();
    CHECK(server->connections() == 0);
}

TEST_CASE("a second server on a live path is refused, a stale socket file is replaced") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    {
        auto first = ankanetd::control_server::open(io.get_executor(), path, target, why);
        REQUIRE(first);
        auto second = ankanetd::control_server::open(io.get_executor(), path, target, why);
        REQUIRE(!second);
        CHECK(why == fmt::format("control socket {}: another server answers there (is another ankanetd running?)", path.native()));
        CHECK(fs::is_socket(path)); // the first one's file is left alone
        const int fd = connect_to(path);
        send_all(fd, "{\"command\":\"vm.list\"}\n");
        CHECK(read_lines(io, fd, 1).size() == 1);
        ::close(fd);
    }
    CHECK(!fs::exists(fs::symlink_status(path)));

    // A socket file no one listens on: bound, then its socket closed, as a crashed server leaves it.
    ::close(bound_socket(path));
    REQUIRE(fs::is_socket(path));
    auto server = ankanetd::control_server::open(io.get_executor(), path, target, why);
    REQUIRE(server);
    const int fd = connect_to(path);
    send_all(fd, "{\"id\":\"after\",\"command\":\"vm.list\"}\n");
    const auto lines = read_lines(io, fd, 1);
    REQUIRE(lines.size() == 1);
    CHECK(json::parse(lines[0])["id"] == "after");
    ::close(fd);
}

TEST_CASE("a file that is not a socket, or a missing directory, is refused and nothing touched") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    { std::ofstream{path} << "precious\n"; }
    CHECK(!ankanetd::control_server::open(io.get_executor(), path, target, why));
    CHECK(why == fmt::format("control socket {}: a file that is not a socket is there (left as it is)", path.native()));
    std::ifstream in{path};
    std::string content;
    std::getline(in, content);
    CHECK(content == "precious");

    const auto nowhere = dir.path / "missing" / "control.sock";
    CHECK(!ankanetd::control_server::open(io.get_executor(), nowhere, target, why));
    CHECK(why == fmt::format("control socket {}: its directory {} does not exist", nowhere.native(), (dir.path / "missing").native()));

    CHECK(!ankanetd::control_server::open(io.get_executor(), dir.path / std::string(200, 'x'), target, why));
    CHECK(why.find("the path must be 1 to 107 bytes") != std::string::npos);
}

TEST_CASE("at most 16 connections are served, one more is closed at once") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    auto server = ankanetd::control_server::open(io.get_executor(), path, target, why);
    REQUIRE(server);
    std::vector<int> fds;
    for (std::size_t i = 0; i < ankanetd::control_server::max_connections; ++i) {
        fds.push_back(connect_to(path));
        send_all(fds.back(), "{\"command\":\"vm.list\"}\n");
        REQUIRE(read_lines(io, fds.back(), 1).size() == 1); // accepted and served
    }
    CHECK(server->connections() == ankanetd::control_server::max_connections);
    const int extra = connect_to(path);
    CHECK(closed_by_server(io, extra));
    CHECK(server->refused() == 1);
    ::close(extra);
    // A slot freed is taken again.
    ::close(fds.back());
    fds.pop_back();
    io.poll();
    io.restart();
    fds.push_back(connect_to(path));
    send_all(fds.back(), "{\"command\":\"vm.list\"}\n");
    CHECK(read_lines(io, fds.back(), 1).size() == 1);
    for (const int fd : fds) ::close(fd);
    // close() ends the connections too and removes the file.
    server->close();
    CHECK(server->connections() == 0);
    CHECK(!fs::exists(fs::symlink_status(path)));
}

TEST_CASE("ctl prints the answers as tables and lines, --json as they came, refusals on stderr") {
    control_scene scene;
    auto& [dir, path, io, target, why] = scene;
    ankanetd::vm_status vm;
    vm.name = "netns:/run/netns/vm1:eth0";
    vm.backend = "tap";
    vm.mac = *ankanet::wire::mac_address::parse("52:54:00:00:00:01");
    vm.address = ankanet::wire::ipv4_address{192, 168, 64, 2};
    vm.hostname = "evil\x1b[31m";
    vm.lease_expires = 1'800'000'000;
    vm.frames_in = 12345;
    target.vm_list.push_back(vm);
    auto server = ankanetd::control_server::open(io.get_executor(), path, target, why);
    REQUIRE(server);
    auto guard = boost::asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });

    struct result {
        int status;
        std::string out, err;
    };
    const auto ctl = [&](std::vector<std::string_view> args) {
        std::FILE* out = std::tmpfile();
        std::FILE* err = std::tmpfile();
        const int status = ankanetd::run_ctl(args, out, err);
        result r{status, slurp(out), slurp(err)};
        std::fclose(out);
        std::fclose(err);
        return r;
    };
    const std::string p = path.string();

    auto r = ctl({p, "forward", "add", "tcp:8080-8081:80@vm1"});
    CHECK(r.status == 0);
    CHECK(r.out == "added forward 1: tcp:127.0.0.1:8080-8081:80-81@vm1\n");
    r = ctl({p, "forward", "add", "udp:0.0.0.0:5353:53"});
    CHECK(r.status == 0);
    r = ctl({p, "list"});
    CHECK(r.status == 0);
    CHECK(r.out ==
          "ID  PROTO  HOST                 GUEST  VM             CONNS\n"
          " 1  tcp    127.0.0.1:8080-8081  80-81  vm1                3\n"
          " 2  udp    0.0.0.0:5353         53     (the only VM)      3\n");
    r = ctl({p, "vms"});
    CHECK(r.status == 0);
    CHECK(r.out ==
          "NAME                       BACKEND  MAC                IP            HOSTNAME      LEASE-EXPIRES         LINK     IN  OUT  DROPPED\n"
          "netns:/run/netns/vm1:eth0  tap      52:54:00:00:00:01  192.168.64.2  evil\\x1b[31m  2027-01-15 08:00:00Z  up    12345    0        0\n");
    r = ctl({p, "leases"}); // this target serves no DHCP: the header alone
    CHECK(r.status == 0);
    CHECK(r.out == "IP  MAC  HOSTNAME  EXPIRES  VM\n");
    r = ctl({p, "link", "netns:/run/netns/vm1:eth0", "down"});
    CHECK(r.status == 0);
    CHECK(r.out == "netns:/run/netns/vm1:eth0: link down\n");
    r = ctl({p, "forward", "remove", "tcp:127.0.0.1:8080-8081:80@vm1"});
    CHECK(r.status == 0);
    CHECK(r.out == "removed forward 1\n");
    r = ctl({p, "--json", "forward", "remove", "2"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"id\":1,\"ok\":true,\"forward_id\":2}\n");

    r = ctl({p, "forward", "remove", "2"});
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK(r.err == "ankanetd ctl: no forward 2\n");
    r = ctl({p, "forward", "add", "8080:99999"});
    CHECK(r.status == 1);
    CHECK(r.err == "ankanetd ctl: forward \"8080:99999\": \"99999\" is not a port or a range of ports (1-65535)\n");

    r = ctl({p, "frobnicate"});
    CHECK(r.status == 2);
    CHECK(r.err.rfind("ankanetd ctl: unknown command 'frobnicate'", 0) == 0);
    r = ctl({p, "link", "vm1", "sideways"});
    CHECK(r.status == 2);
    r = ctl({});
    CHECK(r.status == 2);
    CHECK(r.err == "ankanetd ctl: name the control socket's PATH and a command; see ankanetd ctl --help\n"); // one line
    r = ctl({(dir.path / "nothing.sock").string(), "list"});
    CHECK(r.status == 1);
    CHECK(r.err == fmt::format("ankanetd ctl: {}: connect: No such file or directory\n", (dir.path / "nothing.sock").string()));

    guard.reset();
    boost::asio::post(io, [&] { server->close(); });
    runner.join();
}

TEST_CASE("ctl gives up after its timeout when the server does not answer") {
    temp_dir dir;
    const auto path = dir.path / "silent.sock";
    // A listener that never accepts: the connect succeeds (backlog), no answer comes.
    const int listener = bound_socket(path);
    REQUIRE(::listen(listener, 4) == 0);
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    const std::string p = path.string();
    const std::vector<std::string_view> args{p, "vms"};
    const auto start = std::chrono::steady_clock::now();
    CHECK(ankanetd::run_ctl(args, out, err, std::chrono::milliseconds{200}) == 1);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds{2});
    CHECK(slurp(err) == fmt::format("ankanetd ctl: {}: no answer within 200 ms (waiting for the answer)\n", p));
    std::fclose(out);
    std::fclose(err);
    ::close(listener);
}
