// Fuzz: ankanetd's control protocol (examples/ankanetd/control_protocol.hpp). Each input is one
// request line, handed to handle_request() with a fake target over a real forward::table. The
// answer must be one line of JSON: an object with "id" and a boolean "ok", and an "error" string
// when ok is false. When the request is a JSON object within the nesting limit, its "id" comes back
// as it was (null when absent). A forward the target added is answered with exactly the rule the
// target got, and its "text" reads back (forward::parse_rule) as that rule.
#include <ankanetd/control_protocol.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fwd = ankanet::forward;
using json = nlohmann::ordered_json;

void require(bool ok) {
    if (!ok) std::abort();
}

class fake_target final : public ankanetd::control_target {
public:
    fwd::table table{fwd::table_limits{8, 256}};
    std::optional<fwd::rule> added;

    fake_target() {
        (void)table.add(*fwd::parse_rule("8080:80@vm1"));
        (void)table.add(*fwd::parse_rule("udp:0.0.0.0:5000-5009:5000@52:54:00:00:00:01"));
    }
    std::vector<ankanetd::forward_status> forwards() override {
        std::vector<ankanetd::forward_status> out;
        for (const auto& e : table.entries()) out.push_back({e.id, e.rule, e.id});
        return out;
    }
    ankanet::result<fwd::rule_id> add_forward(const fwd::rule& r, std::string& why) override {
        auto id = table.add(r, &why);
        if (id) added = r;
        return id;
    }
    std::error_code remove_forward(fwd::rule_id id, std::string& why) override {
        if (table.remove(id)) return {};
        why = "no such forward";
        return fwd::forward_errc::no_such_rule;
    }
    std::vector<ankanetd::vm_status> vms() override {
        ankanetd::vm_status vm;
        vm.name = "netns:/run/netns/vm1:eth0";
        vm.backend = "tap";
        vm.mac = *ankanet::wire::mac_address::parse("52:54:00:00:00:01");
        vm.address = ankanet::wire::ipv4_address{192, 168, 64, 2};
        vm.hostname = "vm\xff\n1"; // a guest's choice: not UTF-8, a newline
        vm.lease_expires = 1'800'000'000;
        return {vm, ankanetd::vm_status{}};
    }
    std::error_code set_link(std::string_view vm, bool, std::string& why) override {
        if (vm == "vm1" || vm == "52:54:00:00:00:01") return {};
        why = "no VM " + std::string{vm}; // the request's text, whole: the writer must cope
        return std::make_error_code(std::errc::no_such_device);
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view line{reinterpret_cast<const char*>(data), size};
    fake_target target;
    const auto answer = ankanetd::handle_request(line, target);

    require(answer.find('\n') == std::string::npos);
    const auto response = json::parse(answer, nullptr, false);
    require(!response.is_discarded() && response.is_object());
    require(response.contains("id") && response.contains("ok") && response["ok"].is_boolean());
    const bool ok = response["ok"].get<bool>();
    if (!ok) require(response.contains("error") && response["error"].is_string() && !response["error"].get<std::string>().empty());

    // The id comes back as it came, for every request that is an object within the nesting limit.
    if (line.find('\0') == std::string_view::npos && ankanetd::control_detail::nesting_depth(line) <= ankanetd::max_nesting) {
        const auto request = json::parse(line, nullptr, false);
        if (!request.is_discarded() && request.is_object()) {
            require(response["id"] == (request.contains("id") ? request["id"] : json(nullptr)));
        } else {
            require(!ok && response["id"].is_null());
        }
    }

    // A forward added is the rule the target got, and its text reads back as that rule.
    if (target.added) {
        require(ok && response.contains("forward"));
        const auto& f = response["forward"];
        require(f["text"] == fwd::format_rule(*target.added));
        require(f["host_port"] == target.added->host_port && f["host_port_end"] == target.added->host_port_last);
        require(f["guest_port"] == target.added->guest_port && f["guest_port_end"] == target.added->guest_port_last());
        const auto back = fwd::parse_rule(f["text"].get<std::string>());
        require(back.has_value() && *back == *target.added);
    }
    return 0;
}
