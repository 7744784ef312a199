/// @file
/// ankanet::dhcp lease stores — where bound leases live between restarts.
///
/// Theory of operation. A store models `dhcp::lease_store` (see lease_pool.hpp): load once, then
/// put/erase one lease at a time. The pool calls put() before it hands a lease out. A store either
/// makes the change durable before put() returns, or — a `deferred_lease_store` — says later, by a
/// sequence number, when it has (dhcp::basic_service then holds the ACK back until then).
///
/// memory_lease_store keeps leases in a hash map: nothing survives the process.
///
/// file_lease_store keeps the whole lease set in memory and rewrites the lease file atomically:
/// write `<file>.tmp` in the same directory, fsync it, rename() it over the file, fsync the
/// directory. rename() is atomic on POSIX filesystems, so after a crash at any instant the file is
/// either the old or the new complete set — never a torn mix — and the directory fsync makes the
/// rename itself durable. When that happens is the write_mode:
///  * immediate: on every change, before put() returns. One rewrite (O(leases)) and two fsyncs per
///    change, on the caller's thread: simple, and the caller never needs to ask; but a daemon whose
///    one thread also moves every VM's frames stalls them all for every fsync (a few hundred
///    commits a second at most; bench/dhcp_load/ has figures).
///  * background: put() changes memory, counts a change and returns; a writer thread rewrites the
///    file with every change made since its last rewrite began (group commit: one rewrite and two
///    fsyncs for all the leases granted meanwhile), then records how many changes are durable and
///    calls the on_settled() callable. The data path never waits for the disk. A rewrite that fails
///    leaves its changes in memory, not on disk: the ACKs waiting for them are dropped (the clients
///    retry, and their retries are changes that the next rewrite carries). Destroying the store
///    writes what is pending before the thread ends.
///
/// A client holds one lease: put() of a lease replaces, in the same rewrite, any lease the same
/// client (client_key: its client identifier, else its MAC) holds on another address. A client
/// moving address is therefore one atomic step — the file never holds both its old and its new
/// lease, whenever a crash comes — and the pool's erase() of the old address finds nothing left to do.
/// check_writable() proves, before the first write, that the file can be replaced where it is
/// (its directory exists and takes new files), so a daemon refuses a path it could never write at
/// start-up instead of failing every DHCPACK later.
///
/// Format (text, one lease per line, fields separated by one space):
///
///   ankanet-leases 1
///   `<mac> <client-id hex | -> <ipv4> <expiry unix seconds> <hostname escaped | ->`
///
/// The hostname is percent-escaped: every byte outside '!'..'~', plus '%', becomes \%XX, and a
/// hostname that is exactly "-" is written "%2D", so "-" alone always means "none".
///
/// Loading is strict: an unknown header, a malformed line, a second lease on one address or a second
/// lease for one client (which this store never writes) is an error whose text names "file:line". A
/// missing file is an empty store; a file that exists but cannot be read is an error. After a failed
/// load the store refuses every write (store_not_loaded), so a daemon that could not read its leases
/// can never overwrite them: it must refuse to start. origin(lease) names the line a loaded lease
/// came from, so the pool can say "file:line" too when a lease contradicts its configuration (an
/// address outside the DHCP range, reserved for another client).
#pragma once

#include <ankanet/detail/atomic_file.hpp>
#include <ankanet/dhcp/lease_pool.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ankanet::dhcp {

/// A lease store that keeps leases in memory only. Models `lease_store`.
class memory_lease_store {
public:
    /// Nothing to read: memory starts empty.
    result<std::vector<lease>> load(std::string&) {
        std::vector<lease> all;
        all.reserve(leases_.size());
        for (const auto& [address, l] : leases_) all.push_back(l);
        return all;
    }
    /// Stores or replaces a lease.
    std::error_code put(const lease& l) {
        leases_.insert_or_assign(l.address.to_u32(), l);
        return {};
    }
    /// Forgets the lease of `a`.
    std::error_code erase(wire::ipv4_address a) {
        leases_.erase(a.to_u32());
        return {};
    }
    /// The number of elements.
    std::size_t size() const noexcept { return leases_.size(); }
    /// Where a lease is kept, for error messages: memory has no place to name.
    std::string origin(const lease&) const { return {}; }

private:
    std::unordered_map<std::uint32_t, lease> leases_;
};

namespace detail {

inline constexpr std::string_view lease_file_header = "ankanet-leases 1";

inline void append_hex(std::string& out, std::uint8_t b) {
    constexpr char digits[] = "0123456789abcdef";
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
}

inline std::string escape_hostname(std::string_view name) {
    if (name.empty()) return "-";
    if (name == "-") return "%2D";
    std::string out;
    for (char ch : name) {
        const auto b = static_cast<std::uint8_t>(ch);
        if (b < 0x21 || b > 0x7e || ch == '%') {
            out.push_back('%');
            append_hex(out, b);
        } else {
            out.push_back(ch);
        }
    }
    return out;
}

inline bool unhex_byte(std::string_view two, std::uint8_t& out) {
    const int hi = wire::detail::hex_digit_value(two[0]);
    const int lo = wire::detail::hex_digit_value(two[1]);
    if (hi < 0 || lo < 0) return false;
    out = static_cast<std::uint8_t>(hi * 16 + lo);
    return true;
}

inline bool unescape_hostname(std::string_view text, std::string& out) {
    out.clear();
    if (text == "-") return true;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        std::uint8_t b = 0;
        if (i + 2 >= text.size() || !unhex_byte(text.substr(i + 1, 2), b)) return false;
        out.push_back(static_cast<char>(b));
        i += 2;
    }
    return true;
}

// Whether two leases are one client's: client_key(a) == client_key(b), without building the keys.
inline bool same_client(const lease& a, const lease& b) noexcept {
    if (a.client_id.empty() != b.client_id.empty()) return false;
    return a.client_id.empty() ? a.mac == b.mac : a.client_id == b.client_id;
}

// The client a lease belongs to, in words: "MAC 52:54:00:12:34:56" or "client identifier 01525400123456".
inline std::string describe_client(const lease& l) {
    if (l.client_id.empty()) return fmt::format("MAC {}", l.mac);
    std::string id;
    for (auto b : l.client_id) append_hex(id, b);
    return fmt::format("client identifier {} (MAC {})", id, l.mac);
}

inline std::string format_lease_line(const lease& l) {
    std::string id;
    if (l.client_id.empty()) id = "-";
    for (auto b : l.client_id) append_hex(id, b);
    return fmt::format("{} {} {} {} {}\n", l.mac, id, l.address, l.expiry.time_since_epoch().count(),
                       escape_hostname(l.hostname));
}

// Parses one lease line; on failure returns what was wrong.
inline std::string parse_lease_line(std::string_view line, lease& out) {
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    while (start <= line.size()) {
        const auto space = line.find(' ', start);
        const auto end = space == std::string_view::npos ? line.size() : space;
        fields.push_back(line.substr(start, end - start));
        if (space == std::string_view::npos) break;
        start = space + 1;
    }
    if (fields.size() != 5) return fmt::format("expected 5 space-separated fields, found {}", fields.size());
    auto mac = wire::mac_address::parse(fields[0]);
    if (!mac) return fmt::format("bad MAC address '{}'", fields[0]);
    out.mac = *mac;
    out.client_id.clear();
    if (fields[1] != "-") {
        if (fields[1].empty() || fields[1].size() % 2 != 0) return "bad client identifier (odd hex length)";
        for (std::size_t i = 0; i < fields[1].size(); i += 2) {
            std::uint8_t b = 0;
            if (!unhex_byte(fields[1].substr(i, 2), b)) return "bad client identifier (not hexadecimal)";
            out.client_id.push_back(b);
        }
    }
    auto ip = wire::ipv4_address::parse(fields[2]);
    if (!ip) return fmt::format("bad IPv4 address '{}'", fields[2]);
    out.address = *ip;
    std::int64_t expiry = 0;
    const auto* first = fields[3].data();
    const auto* last = first + fields[3].size();
    const auto [ptr, ec] = std::from_chars(first, last, expiry);
    if (fields[3].empty() || ec != std::errc{} || ptr != last || expiry < 0)
        return fmt::format("bad expiry '{}'", fields[3]);
    out.expiry = sys_seconds{seconds{expiry}};
    if (!unescape_hostname(fields[4], out.hostname)) return fmt::format("bad hostname '{}'", fields[4]);
    out.bound = true;
    return {};
}

} // namespace detail

/// How a file_lease_store makes a change durable (see the theory of operation above).
enum class write_mode : std::uint8_t {
    immediate,  ///< put() and erase() return once the file holds the change (two fsyncs per change)
    background, ///< they return at once; a writer thread rewrites the file with every change made
                ///< meanwhile, one rewrite and two fsyncs for all of them (see changes()/durable())
};

/// A crash-safe lease store backed by a text file (see the theory of operation above).
/// Models `lease_store`; in write_mode::background also `deferred_lease_store`.
class file_lease_store {
public:
    /// Leases kept in `path`, written as `mode` says.
    explicit file_lease_store(std::filesystem::path path, write_mode mode = write_mode::immediate)
        : path_(std::move(path)), mode_(mode), shared_(std::make_unique<shared_state>()) {}

    /// The path.
    const std::filesystem::path& path() const noexcept { return path_; }
    /// The mode.
    write_mode mode() const noexcept { return mode_; }
    /// The number of elements.
    std::size_t size() const {
        std::lock_guard lock{shared_->mutex};
        return shared_->leases.size();
    }

    /// Whether the lease file can be written where it is: its directory exists and takes a new
    /// file, and the path is not a directory or a device. Writes nothing that stays, and never
    /// touches the file itself. On failure `why` says so, naming the path:
    /// "/nonexistent/leases: cannot keep the lease file there: directory /nonexistent does not exist".
    std::error_code check_writable(std::string& why) const {
        return ankanet::detail::check_replaceable_for(path_, "the lease file", why);
    }

    /// "file:line" of a lease as it was loaded (until the first write); empty for any other lease.
    std::string origin(const lease& l) const {
        const auto it = lines_.find(l.address.to_u32());
        return it == lines_.end() ? std::string{} : fmt::format("{}:{}", path_.string(), it->second);
    }

    /// Reads the lease file; `why` says which lines were skipped.
    result<std::vector<lease>> load(std::string& why) {
        std::lock_guard lock{shared_->mutex};
        auto& leases = shared_->leases;
        loaded_ = false;
        leases.clear();
        lines_.clear();
        const std::string name = path_.string();
        std::string text;
        if (auto error = ankanet::detail::read_file(path_, text)) {
            if (error == std::errc::no_such_file_or_directory) { // first start: nothing to lose
                loaded();
                return std::vector<lease>{};
            }
            why = fmt::format("{}: cannot read lease file: {}", name, error.message());
            return make_error_code(lease_errc::unreadable_lease_file);
        }
        const auto fail = [&](std::string what) {
            why = std::move(what);
            leases.clear();
            lines_.clear();
            return make_error_code(lease_errc::corrupt_lease_file);
        };

        std::vector<lease> all;
        std::unordered_map<std::string, std::size_t> client_line; // client key → the line of its lease
        std::string_view rest{text};
        std::size_t line_no = 0;
        bool saw_header = false;
        while (!rest.empty()) {
            ++line_no;
            const auto nl = rest.find('\n');
            if (nl == std::string_view::npos) { // every line we write ends in '\n'
                return fail(fmt::format("{}:{}: truncated line (no newline)", name, line_no));
            }
            const auto line = rest.substr(0, nl);
            rest.remove_prefix(nl + 1);
            if (!saw_header) {
                if (line != detail::lease_file_header) {
                    return fail(fmt::format("{}:{}: not an ankanet lease file (expected header '{}')", name, line_no,
                                            detail::lease_file_header));
                }
                saw_header = true;
                continue;
            }
            lease l;
            if (auto what = detail::parse_lease_line(line, l); !what.empty()) {
                return fail(fmt::format("{}:{}: {}", name, line_no, what));
            }
            if (!leases.emplace(l.address.to_u32(), stored_lease{l, detail::format_lease_line(l)}).second) {
                return fail(fmt::format("{}:{}: second lease for {} (the first is on line {})", name, line_no, l.address,
                                        lines_.at(l.address.to_u32())));
            }
            lines_.emplace(l.address.to_u32(), line_no);
            // This store never writes two leases for one client (put() replaces the other): two
            // are an edit or a copy gone wrong, and which one the client should keep is unknown.
            if (const auto [first, added] = client_line.emplace(client_key(l), line_no); !added) {
                return fail(fmt::format("{}:{}: second lease for {} (the first is on line {}); a client holds one lease",
                                        name, line_no, detail::describe_client(l), first->second));
            }
            all.push_back(std::move(l));
        }
        if (!saw_header) return fail(fmt::format("{}:1: empty lease file (no header)", name));
        loaded();
        return all;
    }

    /// Puts `l` on its address and, in the same rewrite, drops the lease its client held on any
    /// other address (see the theory of operation).
    std::error_code put(const lease& l) {
        if (!loaded_) return lease_errc::store_not_loaded;
        lines_.clear(); // origin() speaks of the file as loaded
        stored_lease line{l, detail::format_lease_line(l)}; // formatted before the writer is kept waiting
        std::unique_lock lock{shared_->mutex};
        auto& leases = shared_->leases;
        const auto key = l.address.to_u32();
        std::vector<stored_lease> before; // what the rewrite replaces, to restore if it fails
        for (auto it = leases.begin(); it != leases.end();) {
            if (it->first == key || detail::same_client(it->second.value, l)) {
                before.push_back(std::move(it->second));
                it = leases.erase(it);
            } else {
                ++it;
            }
        }
        leases.insert_or_assign(key, std::move(line));
        if (mode_ == write_mode::background) return changed(lock);
        if (auto error = persist(leases)) { // the file still holds the old set: so must memory
            leases.erase(key);
            for (auto& old : before) leases.insert_or_assign(old.value.address.to_u32(), std::move(old));
            return error;
        }
        return {};
    }

    /// Forgets the lease of `a`.
    std::error_code erase(wire::ipv4_address a) {
        if (!loaded_) return lease_errc::store_not_loaded;
        lines_.clear();
        std::unique_lock lock{shared_->mutex};
        auto& leases = shared_->leases;
        const auto it = leases.find(a.to_u32());
        if (it == leases.end()) return {};
        stored_lease before = std::move(it->second);
        leases.erase(it);
        if (mode_ == write_mode::background) return changed(lock);
        if (auto error = persist(leases)) {
            leases.emplace(a.to_u32(), std::move(before));
            return error;
        }
        return {};
    }

    // --- write_mode::background (in write_mode::immediate all three stay 0) ---------------------

    /// Changes made so far (puts and erases that changed something).
    std::uint64_t changes() const {
        std::lock_guard lock{shared_->mutex};
        return shared_->changes;
    }
    /// How many of them the file holds: change n is durable once durable() >= n.
    std::uint64_t durable() const {
        std::lock_guard lock{shared_->mutex};
        return shared_->durable;
    }
    /// How many the writer has tried: changes in (durable(), settled()] failed to be written (they
    /// stay in memory and go out with the next change's rewrite).
    std::uint64_t settled() const {
        std::lock_guard lock{shared_->mutex};
        return shared_->settled;
    }
    /// Why the last failed rewrite failed (empty when none has).
    std::error_code last_write_error() const {
        std::lock_guard lock{shared_->mutex};
        return shared_->last_error;
    }
    /// `wake` is called from the writer thread after every rewrite it tried, so that the owner can
    /// look at durable() from its own thread; empty to stop. Replacing it waits for no call in flight.
    void on_settled(std::function<void()> wake) {
        std::lock_guard lock{shared_->mutex};
        shared_->wake = std::move(wake);
    }

private:
    // A lease and its line in the file.
    struct stored_lease {
        lease value;
        std::string line;
    };

    // What the data path and the writer thread share; heap-allocated so the store stays movable
    // while the thread runs. Destroying it stops the writer after it has written what is pending.
    struct shared_state {
        mutable std::mutex mutex;
        std::condition_variable pending; // the writer waits here for changes
        std::map<std::uint32_t, stored_lease> leases; // ordered: the file lists leases by address
        std::uint64_t changes = 0, settled = 0, durable = 0;
        std::error_code last_error;
        std::function<void()> wake;
        bool stopping = false;
        std::thread writer;

        ~shared_state() {
            if (!writer.joinable()) return;
            {
                std::lock_guard lock{mutex};
                stopping = true;
            }
            pending.notify_one();
            writer.join();
        }
    };

    // Lines are formatted once, when a lease changes; a rewrite only concatenates them, so the
    // writer holds the lock for a copy of the file's bytes, not for formatting every lease again.
    static std::string serialize(const std::map<std::uint32_t, stored_lease>& leases) {
        std::size_t size = detail::lease_file_header.size() + 1;
        for (const auto& entry : leases) size += entry.second.line.size();
        std::string text;
        text.reserve(size);
        text.append(detail::lease_file_header);
        text.push_back('\n');
        for (const auto& entry : leases) text += entry.second.line;
        return text;
    }

    std::error_code persist(const std::map<std::uint32_t, stored_lease>& leases) const {
        return ankanet::detail::replace_file(path_, serialize(leases));
    }

    // Called with the mutex held, after a successful load.
    void loaded() {
        loaded_ = true;
        if (mode_ == write_mode::background && !shared_->writer.joinable()) {
            shared_->writer = std::thread{[state = shared_.get(), path = path_] { write_behind(*state, path); }};
        }
    }

    std::error_code changed(std::unique_lock<std::mutex>& lock) {
        ++shared_->changes;
        lock.unlock();
        shared_->pending.notify_one();
        return {};
    }

    // The writer thread: one rewrite carries every change made since the last one began (group
    // commit). It serialises under the lock (microseconds) and writes and fsyncs outside it.
    static void write_behind(shared_state& s, const std::filesystem::path& path) {
        std::unique_lock lock{s.mutex};
        for (;;) {
            s.pending.wait(lock, [&] { return s.stopping || s.changes > s.settled; });
            if (s.changes == s.settled) return; // stopping, and everything is written
            const std::uint64_t target = s.changes;
            std::string text = serialize(s.leases);
            lock.unlock();
            const auto error = ankanet::detail::replace_file(path, text);
            lock.lock();
            s.settled = target;
            if (error) s.last_error = error;
            else s.durable = target;
            if (s.wake) s.wake(); // under the lock: on_settled({}) cannot return while a call runs
        }
    }

    std::filesystem::path path_;
    write_mode mode_ = write_mode::immediate;
    std::unordered_map<std::uint32_t, std::size_t> lines_; // address → its line, as loaded
    bool loaded_ = false;
    std::unique_ptr<shared_state> shared_;
};

/// The lease store chosen at run time — from configuration, as a daemon does with `--leases FILE`:
/// a file_lease_store when a path is given, a memory_lease_store otherwise. Models `lease_store`;
/// the one indirection per write is nothing beside a file write.
/// @par Example
/// @code
/// auto store = lease_file ? dhcp::any_lease_store{*lease_file} : dhcp::any_lease_store{};
/// auto pool = dhcp::basic_lease_pool<dhcp::any_lease_store>::create(config, std::move(store));
/// @endcode
class any_lease_store {
public:
    /// Leases in memory only.
    any_lease_store() = default;
    /// Leases in `file` (crash-safe; see file_lease_store and write_mode).
    explicit any_lease_store(std::filesystem::path file, write_mode mode = write_mode::immediate)
        : store_(file_lease_store{std::move(file), mode}) {}

    /// The lease file, when leases are kept in one.
    const std::filesystem::path* file() const noexcept {
        const auto* f = std::get_if<file_lease_store>(&store_);
        return f != nullptr ? &f->path() : nullptr;
    }

    /// Commits the lease of `address` to the client (a REQUEST after an OFFER).
    result<std::vector<lease>> load(std::string& why) {
        return std::visit([&](auto& s) { return s.load(why); }, store_);
    }
    /// Extends the client's lease of `address`.
    std::error_code put(const lease& l) {
        return std::visit([&](auto& s) { return s.put(l); }, store_);
    }
    /// Gives back the client's lease of `address` (RELEASE).
    std::error_code erase(wire::ipv4_address a) {
        return std::visit([&](auto& s) { return s.erase(a); }, store_);
    }
    /// "file:line" of a loaded lease, for error messages; empty in memory.
    std::string origin(const lease& l) const {
        return std::visit([&](const auto& s) { return s.origin(l); }, store_);
    }

    // deferred_lease_store: a memory store, or a file written immediately, is durable at once (0s).
    /// file_lease_store::changes(); 0 in memory.
    std::uint64_t changes() const { return file_store() ? file_store()->changes() : 0; }
    /// file_lease_store::durable(); 0 in memory.
    std::uint64_t durable() const { return file_store() ? file_store()->durable() : 0; }
    /// file_lease_store::settled(); 0 in memory.
    std::uint64_t settled() const { return file_store() ? file_store()->settled() : 0; }
    /// The last write error.
    std::error_code last_write_error() const { return file_store() ? file_store()->last_write_error() : std::error_code{}; }
    /// The client found `address` in use (DECLINE): it is quarantined.
    void on_settled(std::function<void()> wake) {
        if (auto* f = std::get_if<file_lease_store>(&store_)) f->on_settled(std::move(wake));
    }

private:
    const file_lease_store* file_store() const noexcept { return std::get_if<file_lease_store>(&store_); }

    std::variant<memory_lease_store, file_lease_store> store_;
};

/// @par DeferredLeaseStore (optional, beyond LeaseStore)
/// A store whose put()/erase() may return before the change is durable: `s.changes()` counts the
/// changes made, `s.durable()` how many of them are durable (change n is once durable() >= n),
/// `s.settled()` how many have been tried (a change in (durable(), settled()] failed and is retried
/// with the next), `s.last_write_error()`, and `s.on_settled(fn)` registers a callable the store
/// calls, from any thread, when settled() has moved. dhcp::basic_service holds an ACK back until
/// its lease is durable.
template <class S>
concept deferred_lease_store = lease_store<S> && requires(S& s, const S& cs, std::function<void()> wake) {
    { cs.changes() } -> std::same_as<std::uint64_t>;
    { cs.durable() } -> std::same_as<std::uint64_t>;
    { cs.settled() } -> std::same_as<std::uint64_t>;
    { cs.last_write_error() } -> std::same_as<std::error_code>;
    s.on_settled(std::move(wake));
};

static_assert(lease_store<memory_lease_store>);
static_assert(lease_store<file_lease_store>);
static_assert(lease_store<any_lease_store>);
static_assert(deferred_lease_store<file_lease_store>);
static_assert(deferred_lease_store<any_lease_store>);

} // namespace ankanet::dhcp
