#include <ankanetd/log.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace std::string_view_literals;

namespace {

/// Runs `f` with stderr (fd 2) sent to a temporary file; returns what was written. Lines are
/// written as for the journal ("<N>" priority prefixes, no timestamp), so the text is exact.
template <class F>
std::string captured_stderr(F&& f, ankanetd::log_level threshold = ankanetd::log_level::info) {
    auto& config = ankanetd::log_config();
    const auto saved_config = config;
    config = ankanetd::log_settings{threshold, true};
    std::fflush(stderr);
    std::FILE* file = std::tmpfile();
    if (file == nullptr) throw std::runtime_error("tmpfile failed");
    const int saved = ::dup(STDERR_FILENO);
    ::dup2(::fileno(file), STDERR_FILENO);
    f();
    std::fflush(stderr);
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    std::string text;
    std::rewind(file);
    char chunk[512];
    for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, file)) > 0;) text.append(chunk, n);
    std::fclose(file);
    config = saved_config;
    return text;
}

const auto guest_mac = *ankanet::wire::mac_address::parse("52:54:00:00:00:01");
const ankanet::wire::ipv4_address guest_address{192, 168, 64, 2};

bool printable_ascii_lines(std::string_view text) {
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c != '\n' && (byte < 0x20 || byte > 0x7e)) return false;
    }
    return true;
}

} // namespace

TEST_CASE("ankanetd log: a guest's host name cannot forge a line or reach the terminal raw") {
    ankanetd::log_observer observer;
    const std::string hostname = "pc\nankanetd: FORGED DHCP leased 192.168.64.9\r\x1b[31mred\x1b[0m\\\xff";
    const auto text = captured_stderr([&] {
        observer.on(ankanet::dhcp::lease_event{ankanet::dhcp::lease_event_kind::acknowledged, guest_mac, guest_address,
                                               hostname, {}});
    });
    CHECK(text == "<6>ankanetd: DHCP leased 192.168.64.2 to 52:54:00:00:00:01 (pc\\x0aankanetd: FORGED DHCP leased "
                  "192.168.64.9\\x0d\\x1b[31mred\\x1b[0m\\x5c\\xff)\n");
    CHECK(printable_ascii_lines(text));
}

TEST_CASE("ankanetd log: a DECLINE's message is the guest's text and is escaped, and a long one is cut") {
    ankanetd::log_observer observer;
    const std::string message = "\nankanetd: FORGED" + std::string(2000, 'm');
    const auto text = captured_stderr([&] {
        observer.on(ankanet::dhcp::lease_event{ankanet::dhcp::lease_event_kind::declined, guest_mac, guest_address,
                                               "host\x1b", message});
    });
    INFO(text);
    CHECK(text.starts_with("<6>ankanetd: DHCP declined 192.168.64.2 by 52:54:00:00:00:01 (host\\x1b): \\x0aankanetd: FORGED"));
    CHECK(text.ends_with("\\...[1761 more bytes]\n"));
    CHECK(text.find('\n') == text.size() - 1);
    CHECK(printable_ascii_lines(text));
}

TEST_CASE("ankanetd log: port names and refusals are one line each, whatever they hold") {
    ankanetd::log_observer observer;
    const auto text = captured_stderr([&] {
        observer.on(ankanet::port_refused_event{"vm\n1", "MAC in use by VM 'a\nb'"});
        observer.on(ankanet::link_changed_event{"netns:/run/netns/x:eth0", true});
    });
    CHECK(text == "<4>ankanetd: vm\\x0a1: refused: MAC in use by VM 'a\\x0ab'\n"
                  "<6>ankanetd: netns:/run/netns/x:eth0: link up\n");
}

TEST_CASE("ankanetd log: log_line writes a control character that reached it unescaped as \\xNN") {
    CHECK(ankanetd::log_line("{}", "a\nb\x1b\x7f") == "ankanetd: a\\x0ab\\x1b\\x7f\n");
    CHECK(ankanetd::log_line("plain {} text", 42) == "ankanetd: plain 42 text\n");
    // Already escaped text is left as it is (no double escaping of its backslashes).
    CHECK(ankanetd::log_line("{}", ankanet::printable("a\nb\\")) == "ankanetd: a\\x0ab\\x5c\n");
    CHECK(ankanetd::log_line("{}", "caf\xc3\xa9"sv) == "ankanetd: caf\xc3\xa9\n"); // an operator's UTF-8 path
}

TEST_CASE("ankanetd log: a VM's refused DHCP messages are one line naming its port, what was refused and how often") {
    ankanetd::log_observer observer;
    const auto text = captured_stderr([&] {
        observer.on(ankanet::dhcp::refusal_event{"netns:/run/netns/a:eth0", guest_mac, ankanet::dhcp::refusal_kind::rate_limited, 31});
    });
    CHECK(text == "<4>ankanetd: netns:/run/netns/a:eth0: DHCP message rate limit reached; messages dropped (31 so far, from "
                  "52:54:00:00:00:01)\n");
}

TEST_CASE("ankanetd log: a VM over its limit of ARP-claimed addresses is one line saying the limit") {
    ankanetd::log_observer observer;
    const auto text = captured_stderr([&] { observer.on(ankanet::gateway::arp_limit_event{"vm\x1b", guest_mac, 8, 245}); });
    CHECK(text == "<4>ankanetd: vm\\x1b: 52:54:00:00:00:01 reached its limit of 8 addresses claimed by ARP; further claims "
                  "dropped (245 so far)\n");
}

TEST_CASE("ankanetd log: -q keeps warnings and errors, -v adds debug lines (a DHCP offer)") {
    ankanetd::log_observer observer;
    const auto events = [&] {
        observer.on(ankanet::dhcp::lease_event{ankanet::dhcp::lease_event_kind::offered, guest_mac, guest_address, {}, {}});
        observer.on(ankanet::link_changed_event{"vm", false});
        observer.on(ankanet::port_refused_event{"vm", "MAC in use"});
        ankanetd::log_error("cannot {}", "start");
    };
    CHECK(captured_stderr(events, ankanetd::log_level::warning) ==
          "<4>ankanetd: vm: refused: MAC in use\n<3>ankanetd: cannot start\n");
    CHECK(captured_stderr(events) == "<6>ankanetd: vm: link down\n<4>ankanetd: vm: refused: MAC in use\n<3>ankanetd: cannot start\n");
    CHECK(captured_stderr(events, ankanetd::log_level::debug) ==
          "<7>ankanetd: DHCP offered 192.168.64.2 to 52:54:00:00:00:01\n<6>ankanetd: vm: link down\n"
          "<4>ankanetd: vm: refused: MAC in use\n<3>ankanetd: cannot start\n");
}

TEST_CASE("ankanetd log: off the journal a line begins with a UTC timestamp to the millisecond and the level") {
    // 2026-12-08T01:02:03.045Z: 1796691723 s since the epoch, and 45 ms.
    const std::chrono::system_clock::time_point at{std::chrono::milliseconds{1796691723045}};
    CHECK(ankanetd::log_prefix(ankanetd::log_level::info, false, at) == "2026-12-08T01:02:03.045Z info  ");
    CHECK(ankanetd::log_prefix(ankanetd::log_level::warning, false, at) == "2026-12-08T01:02:03.045Z warn  ");
    CHECK(ankanetd::log_prefix(ankanetd::log_level::error, false, at) == "2026-12-08T01:02:03.045Z error ");
    CHECK(ankanetd::log_prefix(ankanetd::log_level::debug, true, at) == "<7>");
    CHECK(ankanetd::log_prefix(ankanetd::log_level::error, true, at) == "<3>");
}

TEST_CASE("ankanetd log: stderr is the journal only when $JOURNAL_STREAM names its device and inode") {
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    struct stat st{};
    REQUIRE(::fstat(::fileno(file), &st) == 0);
    const auto same = fmt::format("{}:{}", st.st_dev, st.st_ino);
    const auto other = fmt::format("{}:{}", st.st_dev, st.st_ino + 1);
    CHECK(ankanetd::is_journal_stream(same.c_str(), ::fileno(file)));
    CHECK_FALSE(ankanetd::is_journal_stream(other.c_str(), ::fileno(file))); // stderr redirected elsewhere
    CHECK_FALSE(ankanetd::is_journal_stream(nullptr, ::fileno(file)));       // not run by systemd
    CHECK_FALSE(ankanetd::is_journal_stream("", ::fileno(file)));
    CHECK_FALSE(ankanetd::is_journal_stream((same + "x").c_str(), ::fileno(file)));
    CHECK_FALSE(ankanetd::is_journal_stream("12", ::fileno(file)));
    std::fclose(file);
}

TEST_CASE("ankanetd log: signals by name") {
    CHECK(ankanetd::signal_name(SIGTERM) == "SIGTERM");
    CHECK(ankanetd::signal_name(SIGINT) == "SIGINT");
    CHECK(ankanetd::signal_name(SIGHUP) == "SIGHUP");
    CHECK(ankanetd::signal_name(0) == "signal 0");
}
