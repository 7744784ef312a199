#include <ankanet/l2/mac_memory.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../support/temp_dir.hpp"

namespace fs = std::filesystem;
using ankanet::l2::mac_memory;
using ankanet::l2::mac_memory_errc;
using ankanet::wire::mac_address;

using ankanet::test::temp_dir;
using ankanet::test::read_text;

namespace {
void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out{p, std::ios::binary | std::ios::trunc};
    out << text;
}

mac_address mac_n(std::uint32_t n) {
    return mac_address{{0x02, 0x00, static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
                        static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)}};
}

mac_memory loaded(const fs::path& file) {
    mac_memory memory{file};
    std::string why;
    const auto error = memory.load(why);
    INFO(why);
    REQUIRE(!error);
    return memory;
}

} // namespace

TEST_CASE("mac_memory: a missing file is an empty memory, and nothing is written until something is remembered") {
    temp_dir dir;
    const auto file = dir.path / "leases.macs";
    auto memory = loaded(file);
    CHECK(memory.size() == 0);
    CHECK_FALSE(memory.lookup("netns:/run/netns/vm1:eth0"));
    CHECK_FALSE(fs::exists(file));
    REQUIRE(!memory.forget("nobody"));
    CHECK_FALSE(fs::exists(file));
}

TEST_CASE("mac_memory: what is remembered is in the file when remember() returns, and a restart finds it") {
    temp_dir dir;
    const auto file = dir.path / "leases.macs";
    // Names hold any bytes: spaces, '%', newlines, non-ASCII.
    const std::vector<std::pair<std::string, mac_address>> vms{
        {"netns:/run/netns/vm1:eth0", mac_n(1)},
        {"a name with spaces", mac_n(2)},
        {"100%\nsure \xc3\xa9t\xc3\xa9", mac_n(3)},
        {"-", mac_n(4)},
    };
    {
        auto memory = loaded(file);
        for (const auto& [name, mac] : vms) {
            REQUIRE(!memory.remember(name, mac));
            // Durable before it is used: a second reader sees it at once.
            CHECK(loaded(file).lookup(name) == mac);
        }
        REQUIRE(!memory.remember("gone", mac_n(9)));
        REQUIRE(!memory.forget("gone"));
        CHECK(memory.size() == vms.size());
        CHECK(memory.holder(mac_n(2)) == std::string{"a name with spaces"});
        CHECK_FALSE(memory.holder(mac_n(9)));
    }
    const auto text = read_text(file);
    CHECK(text.rfind("ankanet-macs 1\n", 0) == 0);
    CHECK(text.find("02:00:00:00:00:03 100%25%0asure%20%c3%a9t%c3%a9\n") != std::string::npos);
    CHECK_FALSE(fs::exists(file.string() + ".tmp"));

    auto again = loaded(file);
    CHECK(again.size() == vms.size());
    for (const auto& [name, mac] : vms) CHECK(again.lookup(name) == mac);
    CHECK_FALSE(again.lookup("gone"));

    // Remembering what is remembered writes nothing; a new MAC for a VM replaces its old one.
    const auto before = fs::last_write_time(file);
    REQUIRE(!again.remember(vms[0].first, vms[0].second));
    CHECK(fs::last_write_time(file) == before);
    REQUIRE(!again.remember(vms[0].first, mac_n(7)));
    CHECK(loaded(file).lookup(vms[0].first) == mac_n(7));
    CHECK_FALSE(again.holder(mac_n(1)));
    REQUIRE(!again.remember("reuses the old MAC", mac_n(1)));
}

TEST_CASE("mac_memory: refuses a MAC remembered for another VM, a group MAC, a bad name, and writes before load") {
    temp_dir dir;
    const auto file = dir.path / "macs";
    mac_memory unloaded{file};
    CHECK(unloaded.remember("vm", mac_n(1)) == mac_memory_errc::not_loaded);
    CHECK(unloaded.forget("vm") == mac_memory_errc::not_loaded);
    CHECK_FALSE(fs::exists(file));

    auto memory = loaded(file);
    REQUIRE(!memory.remember("vm1", mac_n(1)));
    const auto text = read_text(file);
    CHECK(memory.remember("vm2", mac_n(1)) == mac_memory_errc::mac_taken);
    CHECK(memory.remember("vm2", mac_address::broadcast()) == mac_memory_errc::bad_mac);
    CHECK(memory.remember("vm2", *mac_address::parse("01:00:5e:00:00:01")) == mac_memory_errc::bad_mac);
    CHECK(memory.remember("vm2", mac_address{}) == mac_memory_errc::bad_mac);
    CHECK(memory.remember("", mac_n(2)) == mac_memory_errc::bad_name);
    CHECK(memory.remember(std::string(mac_memory::max_name_size + 1, 'x'), mac_n(2)) == mac_memory_errc::bad_name);
    CHECK(read_text(file) == text);
    CHECK_FALSE(memory.lookup("vm2"));

    const std::error_code e = mac_memory_errc::mac_taken;
    CHECK(std::string{e.category().name()} == "ankanet.l2.mac_memory");
    CHECK(e.message() == "MAC address is remembered for another VM");
}

TEST_CASE("mac_memory: a write that fails leaves memory as the file is") {
    temp_dir dir;
    const auto sub = dir.path / "state";
    fs::create_directory(sub);
    const auto file = sub / "macs";
    auto memory = loaded(file);
    REQUIRE(!memory.remember("vm1", mac_n(1)));
    fs::remove_all(sub); // the directory goes away under the daemon
    CHECK(memory.remember("vm2", mac_n(2)) == std::errc::no_such_file_or_directory);
    CHECK_FALSE(memory.lookup("vm2"));
    CHECK_FALSE(memory.holder(mac_n(2)));
    CHECK(memory.remember("vm1", mac_n(3)));
    CHECK(memory.lookup("vm1") == mac_n(1));
    CHECK(memory.holder(mac_n(1)) == std::string{"vm1"});
    CHECK_FALSE(memory.holder(mac_n(3)));
    CHECK(memory.forget("vm1"));
    CHECK(memory.lookup("vm1") == mac_n(1));
}

TEST_CASE("mac_memory: check_writable refuses a place the file cannot be written, naming it") {
    temp_dir dir;
    std::string why;
    CHECK(!mac_memory{dir.path / "macs"}.check_writable(why));
    CHECK(fs::is_empty(dir.path));
    CHECK(mac_memory{"/nonexistent/leases.macs"}.check_writable(why));
    CHECK(why == "/nonexistent/leases.macs: cannot keep the remembered MACs there: directory /nonexistent does not exist");
    CHECK(mac_memory{"/proc/x.macs"}.check_writable(why));
    CHECK(why.find("/proc/x.macs: cannot keep the remembered MACs there: directory /proc does not let files be created in it") == 0);
    fs::create_directory(dir.path / "macs");
    CHECK(mac_memory{dir.path / "macs"}.check_writable(why));
    CHECK(why.find("is a directory") != std::string::npos);
}

TEST_CASE("mac_memory: a corrupt file is an error naming file and line, and is never overwritten") {
    temp_dir dir;
    const auto file = dir.path / "macs";
    const std::string good = "02:00:00:00:00:01 vm1\n";
    struct bad_case {
        std::string text;
        std::string where;
        std::string what;
    };
    const std::vector<bad_case> cases{
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:01 vm2\n", ":3:", "MAC 02:00:00:00:00:01 is remembered for two VMs ('vm1' on line 2)"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 vm1\n", ":3:", "second MAC for VM 'vm1' (the first is on line 2)"},
        {"ankanet-macs 1\n" + good + "zz:00:00:00:00:02 vm2\n", ":3:", "bad MAC address 'zz:00:00:00:00:02'"},
        {"ankanet-macs 1\n" + good + "01:00:5e:00:00:01 vm2\n", ":3:", "MAC 01:00:5e:00:00:01 is not a unicast address"},
        {"ankanet-macs 1\n" + good + "00:00:00:00:00:00 vm2\n", ":3:", "MAC 00:00:00:00:00:00 is not a unicast address"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02\n", ":3:", "expected 2 space-separated fields"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 vm 2\n", ":3:", "expected 2 space-separated fields"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 \n", ":3:", "bad VM name ''"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 vm%2\n", ":3:", "bad VM name 'vm%2'"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 vm%zz\n", ":3:", "bad VM name"},
        {"ankanet-macs 1\n" + good + "02:00:00:00:00:02 vm2", ":3:", "truncated line"},
        {"ankanet-macs 2\n" + good, ":1:", "not an ankanet MAC memory file"},
        {"ankanet-leases 1\n", ":1:", "not an ankanet MAC memory file"},
        {"", ":1:", "empty file"},
    };
    for (const auto& c : cases) {
        write_text(file, c.text);
        mac_memory memory{file};
        std::string why;
        CHECK(memory.load(why) == mac_memory_errc::corrupt_file);
        INFO(why);
        CHECK(why.find(file.string() + c.where + " " + c.what) == 0);
        // A memory that failed to load refuses to write: the file stays as it was.
        CHECK(memory.remember("vm9", mac_n(9)) == mac_memory_errc::not_loaded);
        CHECK(memory.forget("vm1") == mac_memory_errc::not_loaded);
        CHECK(memory.size() == 0);
        CHECK(read_text(file) == c.text);
    }
}

TEST_CASE("mac_memory: an unreadable file is an error naming it") {
    temp_dir dir;
    const auto file = dir.path / "macs";
    fs::create_directory(file);
    mac_memory memory{file};
    std::string why;
    CHECK(memory.load(why) == mac_memory_errc::unreadable_file);
    CHECK(why.find(file.string() + ": cannot read the remembered MACs") == 0);
    CHECK(memory.remember("vm", mac_n(1)) == mac_memory_errc::not_loaded);
}

TEST_CASE("mac_memory: a process SIGKILLed at any instant restarts with every MAC it remembered") {
    temp_dir dir;
    const auto file = dir.path / "macs";
    std::mt19937 rng{20240607};
    std::uniform_int_distribution<int> delay_us{0, 40'000};
    std::map<std::string, mac_address> remembered; // over all rounds
    int killed = 0;
    for (int round = 0; round < 12; ++round) {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // Remember new VMs; report each after remember() returned.
            ::close(fds[0]);
            mac_memory memory{file};
            std::string why;
            if (memory.load(why)) ::_exit(2);
            for (std::uint32_t i = 0; i < 100'000; ++i) {
                const std::uint32_t n = static_cast<std::uint32_t>(round) * 100'000u + i;
                if (memory.remember(fmt::format("vm {}", n), mac_n(n))) ::_exit(3);
                if (::write(fds[1], &n, sizeof n) != static_cast<ssize_t>(sizeof n)) ::_exit(4);
            }
            ::_exit(0);
        }
        ::close(fds[1]);
        ::usleep(static_cast<useconds_t>(delay_us(rng)));
        ::kill(child, SIGKILL);
        std::uint32_t n = 0;
        while (::read(fds[0], &n, sizeof n) == static_cast<ssize_t>(sizeof n)) remembered[fmt::format("vm {}", n)] = mac_n(n);
        ::close(fds[0]);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        if (WIFSIGNALED(status)) {
            ++killed;
        } else {
            REQUIRE(WIFEXITED(status));
            REQUIRE(WEXITSTATUS(status) == 0);
        }
        const auto memory = loaded(file);
        INFO("round " << round);
        for (const auto& [name, mac] : remembered) REQUIRE(memory.lookup(name) == mac);
    }
    CHECK(killed > 0);
    CHECK_FALSE(remembered.empty());
}
