#include <ankanet/dhcp/lease_store.hpp>

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
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
#include "../support/lease_store_settled.hpp"
#include "../support/temp_dir.hpp"

using namespace ankanet;
using namespace ankanet::dhcp;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;

using ankanet::test::temp_dir;
using ankanet::test::read_text;
using ankanet::test::wait_settled;

namespace {
void write_text(const std::filesystem::path& p, const std::string& text) {
    std::ofstream out{p, std::ios::binary | std::ios::trunc};
    out << text;
}

mac_address mac_n(std::uint32_t n) {
    return mac_address{{0x52, 0x54, 0x00, static_cast<std::uint8_t>(n >> 16), static_cast<std::uint8_t>(n >> 8),
                        static_cast<std::uint8_t>(n)}};
}

lease_pool_config slash16() {
    lease_pool_config c;
    c.subnet = ipv4_prefix{ipv4_address{10, 9, 0, 0}, 16};
    c.first = ipv4_address{10, 9, 0, 1};
    c.last = ipv4_address{10, 9, 255, 254};
    c.lease_time = seconds{86400};
    return c;
}

using file_pool = basic_lease_pool<file_lease_store>;

} // namespace

TEST_CASE("memory store keeps what it is given") {
    memory_lease_store s;
    std::string why;
    REQUIRE(s.load(why)->empty());
    REQUIRE(!s.put(lease{mac_n(1), {}, ipv4_address{10, 0, 0, 2}, {}, "a", true}));
    REQUIRE(!s.put(lease{mac_n(1), {}, ipv4_address{10, 0, 0, 2}, {}, "b", true}));
    CHECK(s.size() == 1);
    CHECK(s.load(why)->front().hostname == "b");
    REQUIRE(!s.erase(ipv4_address{10, 0, 0, 2}));
    CHECK(s.size() == 0);
}

TEST_CASE("file store round trip keeps every field") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const sys_seconds t{seconds{1'750'000'000}};
    const std::vector<lease> leases{
        {mac_n(1), {}, ipv4_address{10, 9, 0, 2}, t, "", true},
        {mac_n(2), {0x01, 0x52, 0x54, 0x00, 0xff}, ipv4_address{10, 9, 0, 3}, t + seconds{5}, "vm two", true},
        {mac_n(3), {0x00}, ipv4_address{10, 9, 1, 3}, t, "-", true},
        {mac_n(4), {}, ipv4_address{10, 9, 1, 4}, t, "100%\n\xc3\xa9t\xc3\xa9", true},
    };
    {
        file_lease_store s{path};
        std::string why;
        REQUIRE(s.load(why)->empty()); // no file yet: a fresh start
        for (const auto& l : leases) REQUIRE(!s.put(l));
        REQUIRE(!s.put(lease{mac_n(9), {}, ipv4_address{10, 9, 9, 9}, t, "gone", true}));
        REQUIRE(!s.erase(ipv4_address{10, 9, 9, 9}));
    }
    CHECK(read_text(path).rfind("ankanet-leases 1\n", 0) == 0);
    CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));

    file_lease_store again{path};
    std::string why;
    auto loaded = again.load(why);
    INFO(why);
    REQUIRE(loaded);
    auto sorted = *loaded;
    std::sort(sorted.begin(), sorted.end(), [](const lease& a, const lease& b) { return a.address < b.address; });
    CHECK(sorted == leases);
}

TEST_CASE("a pool over a file store restarts with its leases") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    ipv4_address granted;
    {
        auto pool = file_pool::create(slash16(), file_lease_store{path});
        REQUIRE(pool);
        const lease_request r{client_identity{mac_n(7), {}}, std::nullopt, "guest7"};
        auto offered = pool->offer(r);
        REQUIRE(offered);
        auto acked = pool->commit(r, offered->address);
        REQUIRE(acked);
        granted = acked->address;
    }
    auto pool = file_pool::create(slash16(), file_lease_store{path});
    REQUIRE(pool);
    const auto l = pool->find(granted);
    REQUIRE(l);
    CHECK(l->mac == mac_n(7));
    CHECK(l->hostname == "guest7");
    CHECK(pool->offer(lease_request{client_identity{mac_n(7), {}}, std::nullopt, {}})->address == granted);
}

TEST_CASE("a corrupt lease file is an error naming file and line, and is never overwritten") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const std::string good = "52:54:00:00:00:01 - 10.9.0.2 1750000000 vm1\n";

    struct bad_case {
        std::string text;
        std::string where;
        std::string what;
    };
    const std::vector<bad_case> cases{
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 - 10.9.0.300 1750000000 -\n", ":3:", "IPv4"},
        {"ankanet-leases 1\n" + good + "zz:54:00:00:00:02 - 10.9.0.3 1750000000 -\n", ":3:", "MAC"},
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 - 10.9.0.3 soon -\n", ":3:", "expiry"},
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 0g 10.9.0.3 1750000000 -\n", ":3:", "client identifier"},
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 - 10.9.0.3 1750000000\n", ":3:", "5 space-separated"},
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 - 10.9.0.3 1750000000 bad%zz\n", ":3:", "hostname"},
        {"ankanet-leases 1\n" + good + good, ":3:", "second lease"},
        {"ankanet-leases 1\n" + good + "52:54:00:00:00:02 - 10.9.0.3 17500", ":3:", "truncated"},
        {"ankanet-leases 2\n" + good, ":1:", "header"},
        {"", ":1:", "empty"},
    };
    for (const auto& c : cases) {
        write_text(path, c.text);
        std::string why;
        auto pool = file_pool::create(slash16(), file_lease_store{path}, {}, &why);
        INFO(why);
        CHECK(pool.error() == lease_errc::corrupt_lease_file);
        CHECK(why.find(path.string() + c.where) != std::string::npos);
        CHECK(why.find(c.what) != std::string::npos);

        file_lease_store store{path};
        CHECK_FALSE(store.load(why));
        // A store that failed to load refuses to write: the file stays as it was.
        CHECK(store.put(lease{mac_n(3), {}, ipv4_address{10, 9, 0, 4}, {}, {}, true}) ==
              lease_errc::store_not_loaded);
        CHECK(store.erase(ipv4_address{10, 9, 0, 2}) == lease_errc::store_not_loaded);
        CHECK(read_text(path) == c.text);
    }
}

TEST_CASE("an unreadable lease file is an error naming the file") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    std::filesystem::create_directory(path); // exists, opens, cannot be read as a file
    file_lease_store store{path};
    std::string why;
    CHECK(store.load(why).error() == lease_errc::unreadable_lease_file);
    CHECK(why.find(path.string()) != std::string::npos);
    CHECK(store.put(lease{mac_n(3), {}, ipv4_address{10, 9, 0, 4}, {}, {}, true}) == lease_errc::store_not_loaded);
    CHECK(std::filesystem::is_directory(path));
}

TEST_CASE("a stored lease that conflicts with the configuration refuses the start") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const std::string text = "ankanet-leases 1\n52:54:00:00:00:01 - 192.168.1.5 1750000000 -\n";
    write_text(path, text);
    std::string why;
    auto pool = file_pool::create(slash16(), file_lease_store{path}, {}, &why);
    CHECK(pool.error() == lease_errc::lease_conflict);
    CHECK(why.find("192.168.1.5") != std::string::npos);
    CHECK(read_text(path) == text);
}

TEST_CASE("two leases for one client in a lease file are an error naming both lines, and the file is left as it was") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    struct bad_case {
        std::string text;
        std::string why;
    };
    const std::vector<bad_case> cases{
        // One MAC, no client identifier: the MAC is the client.
        {"ankanet-leases 1\n52:54:00:00:00:01 - 10.9.0.2 1750000000 vm1\n52:54:00:00:00:09 - 10.9.0.3 1750000000 -\n"
         "52:54:00:00:00:01 - 10.9.0.4 1750000000 -\n",
         ":4: second lease for MAC 52:54:00:00:00:01 (the first is on line 2); a client holds one lease"},
        // One client identifier, whatever the MAC (RFC 2131 §4.2: the identifier is the client).
        {"ankanet-leases 1\n52:54:00:00:00:01 01aa 10.9.0.2 1750000000 -\n52:54:00:00:00:02 01aa 10.9.0.3 1750000000 -\n",
         ":3: second lease for client identifier 01aa (MAC 52:54:00:00:00:02) (the first is on line 2); a client holds one lease"},
    };
    for (const auto& c : cases) {
        write_text(path, c.text);
        std::string why;
        auto pool = file_pool::create(slash16(), file_lease_store{path}, {}, &why);
        INFO(why);
        CHECK(pool.error() == lease_errc::corrupt_lease_file);
        CHECK(why == path.string() + c.why);
        CHECK(read_text(path) == c.text);
    }

    // One MAC with two client identifiers is two clients (two DHCP clients on one NIC): accepted.
    const std::string two_clients = "ankanet-leases 1\n52:54:00:00:00:01 01aa 10.9.0.2 1750000000 -\n"
                                    "52:54:00:00:00:01 01bb 10.9.0.3 1750000000 -\n52:54:00:00:00:01 - 10.9.0.4 1750000000 -\n";
    write_text(path, two_clients);
    file_lease_store store{path};
    std::string why;
    const auto loaded = store.load(why);
    INFO(why);
    REQUIRE(loaded);
    CHECK(loaded->size() == 3);
    CHECK(read_text(path) == two_clients);
}

TEST_CASE("a stored lease the configuration refuses is an error naming file and line, and the file is left as it was") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    auto config = slash16();
    config.reservations.push_back({mac_n(8), {}, ipv4_address{10, 9, 0, 8}});
    config.excluded.push_back(ipv4_address{10, 9, 0, 9});
    const std::string first = "ankanet-leases 1\n52:54:00:00:00:01 - 10.9.0.2 1750000000 -\n";
    struct bad_case {
        std::string text;
        std::string why;
    };
    const std::vector<bad_case> cases{
        {first + "52:54:00:00:00:02 - 10.10.0.1 1750000000 -\n",
         ":3: stored lease of 10.10.0.1 lies outside the DHCP range 10.9.0.1-10.9.255.254"},
        {first + "52:54:00:00:00:02 - 10.9.0.8 1750000000 -\n",
         ":3: stored lease of 10.9.0.8 to 52:54:00:00:00:02: address is reserved for another client"},
        {first + "52:54:00:00:00:02 - 10.9.0.9 1750000000 -\n",
         ":3: stored lease of 10.9.0.9 to 52:54:00:00:00:02: address is excluded from the DHCP pool"},
    };
    for (const auto& c : cases) {
        write_text(path, c.text);
        std::string why;
        auto pool = file_pool::create(config, file_lease_store{path}, {}, &why);
        INFO(why);
        CHECK(pool.error() == lease_errc::lease_conflict);
        CHECK(why == path.string() + c.why);
        CHECK(read_text(path) == c.text);
    }
    // The store says where each loaded lease came from, until its first write.
    write_text(path, first + "52:54:00:00:00:02 - 10.9.0.3 1750000000 -\n");
    file_lease_store store{path};
    std::string why;
    REQUIRE(store.load(why));
    CHECK(store.origin(lease{mac_n(2), {}, ipv4_address{10, 9, 0, 3}, {}, {}, true}) == path.string() + ":3");
    CHECK(store.origin(lease{mac_n(5), {}, ipv4_address{10, 9, 0, 5}, {}, {}, true}).empty());
    any_lease_store any{path};
    REQUIRE(any.load(why));
    CHECK(any.origin(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 2}, {}, {}, true}) == path.string() + ":2");
    REQUIRE(!store.erase(ipv4_address{10, 9, 0, 3}));
    CHECK(store.origin(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 2}, {}, {}, true}).empty());
    CHECK(memory_lease_store{}.origin(lease{}).empty());
}

TEST_CASE("a client moving address is one rewrite: the file never holds two leases for it") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const sys_seconds t{seconds{1'750'000'000}};
    {
        file_lease_store store{path};
        std::string why;
        REQUIRE(store.load(why));
        REQUIRE(!store.put(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 2}, t, "a", true}));
        REQUIRE(!store.put(lease{mac_n(2), {}, ipv4_address{10, 9, 0, 3}, t, "b", true}));
        REQUIRE(!store.put(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 7}, t, "a", true})); // moves
        CHECK(store.size() == 2);
        CHECK(read_text(path) == "ankanet-leases 1\n52:54:00:00:00:02 - 10.9.0.3 1750000000 b\n"
                                 "52:54:00:00:00:01 - 10.9.0.7 1750000000 a\n");
        REQUIRE(!store.erase(ipv4_address{10, 9, 0, 2})); // what the pool does next: nothing left to do

        // A client identifier is the client, whatever the MAC; the same MAC without one is another client.
        file_lease_store ids{dir.path / "ids"};
        REQUIRE(ids.load(why));
        REQUIRE(!ids.put(lease{mac_n(1), {0x01, 0xaa}, ipv4_address{10, 9, 0, 2}, t, {}, true}));
        REQUIRE(!ids.put(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 3}, t, {}, true}));
        REQUIRE(!ids.put(lease{mac_n(1), {0x01, 0xbb}, ipv4_address{10, 9, 0, 4}, t, {}, true}));
        REQUIRE(!ids.put(lease{mac_n(2), {0x01, 0xaa}, ipv4_address{10, 9, 0, 5}, t, {}, true})); // moves 01aa
        CHECK(read_text(dir.path / "ids") == "ankanet-leases 1\n52:54:00:00:00:01 - 10.9.0.3 1750000000 -\n"
                                             "52:54:00:00:00:01 01bb 10.9.0.4 1750000000 -\n"
                                             "52:54:00:00:00:02 01aa 10.9.0.5 1750000000 -\n");

        // A rewrite that fails leaves the store as the file is: both leases as they were.
        const auto before = read_text(path);
        std::filesystem::create_directory(path.string() + ".tmp"); // the temporary file cannot be created
        CHECK(store.put(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 3}, t, "a", true}));
        std::filesystem::remove(path.string() + ".tmp");
        CHECK(read_text(path) == before);
        REQUIRE(!store.put(lease{mac_n(3), {}, ipv4_address{10, 9, 0, 4}, t, "c", true}));
        CHECK(read_text(path) == "ankanet-leases 1\n52:54:00:00:00:02 - 10.9.0.3 1750000000 b\n"
                                 "52:54:00:00:00:03 - 10.9.0.4 1750000000 c\n52:54:00:00:00:01 - 10.9.0.7 1750000000 a\n");
    }

    // Through the pool: a client that asks for another address keeps one lease, in the file too.
    std::remove(path.c_str());
    auto pool = file_pool::create(slash16(), file_lease_store{path});
    REQUIRE(pool);
    const lease_request r{client_identity{mac_n(7), {}}, std::nullopt, "vm7"};
    auto first = pool->commit(r, pool->offer(r)->address);
    REQUIRE(first);
    auto moved = pool->commit(r, ipv4_address{10, 9, 3, 3});
    REQUIRE(moved);
    CHECK(read_text(path) == fmt::format("ankanet-leases 1\n52:54:00:00:00:07 - 10.9.3.3 {} vm7\n",
                                         moved->expiry.time_since_epoch().count()));
    std::string why;
    CHECK(file_pool::create(slash16(), file_lease_store{path}, {}, &why));
}

TEST_CASE("check_writable: the lease file's place is checked before anything is written") {
    temp_dir dir;
    std::string why;
    CHECK(!file_lease_store{dir.path / "leases"}.check_writable(why));
    CHECK(std::filesystem::is_empty(dir.path));
    CHECK(file_lease_store{"/nonexistent/leases"}.check_writable(why));
    CHECK(why == "/nonexistent/leases: cannot keep the lease file there: directory /nonexistent does not exist");
    CHECK(file_lease_store{"/proc/x"}.check_writable(why));
    CHECK(why.find("/proc/x: cannot keep the lease file there: directory /proc does not let files be created in it (") == 0);
    CHECK_FALSE(std::filesystem::exists("/proc/x"));
}

TEST_CASE("a daemon SIGKILLed at any instant restarts with every lease it granted") {
    // Immediate: a lease is granted once commit() returned. Background: once the store says its
    // change is durable (when dhcp::basic_service lets the ACK go).
    const auto mode = GENERATE(write_mode::immediate, write_mode::background);
    INFO((mode == write_mode::immediate ? "immediate" : "background"));
    temp_dir dir;
    const auto path = dir.path / "leases";
    std::mt19937 rng{20240605};
    std::uniform_int_distribution<int> delay_us{0, 60'000};
    std::map<std::uint32_t, std::uint32_t> granted; // address → client number, over all rounds
    constexpr int rounds = 20;
    int killed = 0;

    for (int round = 0; round < rounds; ++round) {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The "daemon": grant leases to new clients, report each one once it is granted.
            ::close(fds[0]);
            auto pool = file_pool::create(slash16(), file_lease_store{path, mode});
            if (!pool) ::_exit(2);
            struct pending_report {
                std::uint64_t change;
                std::uint32_t record[2];
            };
            std::vector<pending_report> pending;
            std::size_t reported = 0;
            for (std::uint32_t i = 0; i < 50'000; ++i) {
                const std::uint32_t n = static_cast<std::uint32_t>(round) * 100'000u + i;
                const lease_request r{client_identity{mac_n(n), {}}, std::nullopt, fmt::format("h{}", n)};
                auto offered = pool->offer(r);
                if (!offered) ::_exit(3);
                auto acked = pool->commit(r, offered->address);
                if (!acked) ::_exit(4);
                pending.push_back({pool->store().changes(), {acked->address.to_u32(), n}});
                const std::uint64_t durable = pool->store().durable();
                for (; reported < pending.size() && (mode == write_mode::immediate || pending[reported].change <= durable); ++reported) {
                    const auto& record = pending[reported].record;
                    if (::write(fds[1], record, sizeof record) != static_cast<ssize_t>(sizeof record)) ::_exit(5);
                }
            }
            ::_exit(0);
        }
        ::close(fds[1]);
        ::usleep(static_cast<useconds_t>(delay_us(rng)));
        ::kill(child, SIGKILL);
        std::uint32_t record[2];
        for (;;) {
            const auto got = ::read(fds[0], record, sizeof record);
            if (got <= 0) break;
            REQUIRE(got == static_cast<ssize_t>(sizeof record)); // writes under PIPE_BUF are atomic
            granted[record[0]] = record[1];
        }
        ::close(fds[0]);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        if (WIFSIGNALED(status)) {
            ++killed;
        } else {
            REQUIRE(WIFEXITED(status));
            REQUIRE(WEXITSTATUS(status) == 0);
        }

        // Restart: the file loads, and holds every lease the child reported.
        std::string why;
        auto pool = file_pool::create(slash16(), file_lease_store{path}, {}, &why);
        INFO("round " << round << ": " << why);
        REQUIRE(pool);
        for (const auto& [address, n] : granted) {
            const auto l = pool->find(ipv4_address{address});
            REQUIRE(l);
            REQUIRE(l->mac == mac_n(n));
            REQUIRE(l->hostname == fmt::format("h{}", n));
        }
    }
    CHECK(killed > 0);
    CHECK(granted.size() > 0);
}

// --- write_mode::background -----------------------------------------------------------------------

TEST_CASE("background store: put returns at once, the writer makes it durable and says so, in group commits") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const sys_seconds t{seconds{1'750'000'000}};
    file_lease_store s{path, write_mode::background};
    std::atomic<int> wakeups{0};
    s.on_settled([&] { ++wakeups; });
    std::string why;
    REQUIRE(s.load(why)->empty());
    CHECK(s.changes() == 0);

    constexpr std::uint32_t leases = 500;
    for (std::uint32_t i = 1; i <= leases; ++i) {
        REQUIRE(!s.put(lease{mac_n(i), {}, ipv4_address{ipv4_address{10, 9, 0, 0}.to_u32() + i}, t, fmt::format("vm{}", i), true}));
    }
    CHECK(s.changes() == leases);
    wait_settled(s);
    CHECK(s.durable() == leases);
    CHECK_FALSE(s.last_write_error());
    // Each wakeup follows one rewrite; puts made while a rewrite ran share the next one.
    CHECK(wakeups.load() >= 1);
    CHECK(wakeups.load() < static_cast<int>(leases));
    INFO("rewrites for " << leases << " puts: " << wakeups.load());

    file_lease_store reread{path};
    auto loaded = reread.load(why);
    REQUIRE(loaded);
    CHECK(loaded->size() == leases);

    // An erase is a change as well.
    REQUIRE(!s.erase(ipv4_address{10, 9, 0, 1}));
    CHECK(s.changes() == leases + 1);
    wait_settled(s);
    file_lease_store after_erase{path};
    CHECK(after_erase.load(why)->size() == leases - 1);
}

TEST_CASE("background store: destroying it writes what is pending first") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const sys_seconds t{seconds{1'750'000'000}};
    {
        file_lease_store s{path, write_mode::background};
        std::string why;
        REQUIRE(s.load(why));
        for (std::uint32_t i = 1; i <= 200; ++i) {
            REQUIRE(!s.put(lease{mac_n(i), {}, ipv4_address{ipv4_address{10, 9, 1, 0}.to_u32() + i}, t, {}, true}));
        }
    } // no wait: the destructor finishes the writer's work
    file_lease_store reread{path};
    std::string why;
    auto loaded = reread.load(why);
    INFO(why);
    REQUIRE(loaded);
    CHECK(loaded->size() == 200);
}

TEST_CASE("background store: a failed rewrite is settled but not durable, and the next change carries it") {
    temp_dir dir;
    const auto path = dir.path / "leases";
    const sys_seconds t{seconds{1'750'000'000}};
    file_lease_store s{path, write_mode::background};
    std::string why;
    REQUIRE(s.load(why));
    REQUIRE(!s.put(lease{mac_n(1), {}, ipv4_address{10, 9, 0, 2}, t, "one", true}));
    wait_settled(s);
    REQUIRE(s.durable() == 1);

    // A directory where the temporary file must go makes every rewrite fail (even for root).
    std::filesystem::create_directory(path.string() + ".tmp");
    REQUIRE(!s.put(lease{mac_n(2), {}, ipv4_address{10, 9, 0, 3}, t, "two", true}));
    wait_settled(s);
    CHECK(s.settled() == 2);
    CHECK(s.durable() == 1);
    CHECK(s.last_write_error() == std::errc::is_a_directory);
    file_lease_store on_disk{path};
    CHECK(on_disk.load(why)->size() == 1); // the old complete set, untouched

    std::filesystem::remove(path.string() + ".tmp");
    REQUIRE(!s.put(lease{mac_n(3), {}, ipv4_address{10, 9, 0, 4}, t, "three", true}));
    wait_settled(s);
    CHECK(s.durable() == 3);
    file_lease_store healed{path};
    CHECK(healed.load(why)->size() == 3); // the lease whose rewrite failed went out with the next
}
