#include <ankanetd/control_protocol.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

using json = nlohmann::ordered_json;
namespace fwd = ankanet::forward;

namespace {

/// A control_target over a real forward::table, recording every call.
class fake_target : public ankanetd::control_target {
public:
    fwd::table table{fwd::table_limits{4, 64}};
    std::vector<ankanetd::vm_status> vm_list;
    std::vector<std::string> calls;
    struct link_call {
        std::string vm;
        bool up;
    };
    std::vector<link_call> links;

    std::vector<ankanetd::forward_status> forwards() override {
        calls.push_back("forwards");
        std::vector<ankanetd::forward_status> out;
        for (const auto& e : table.entries()) out.push_back({e.id, e.rule, e.id * 10u});
        return out;
    }
    ankanet::result<fwd::rule_id> add_forward(const fwd::rule& r, std::string& why) override {
        calls.push_back("add " + fwd::format_rule(r));
        return table.add(r, &why);
    }
    std::error_code remove_forward(fwd::rule_id id, std::string& why) override {
        calls.push_back("remove " + std::to_string(id));
        if (table.remove(id)) return {};
        why = "forward " + std::to_string(id) + ": no such forward";
        return fwd::forward_errc::no_such_rule;
    }
    std::vector<ankanetd::vm_status> vms() override {
        calls.push_back("vms");
        return vm_list;
    }
    std::error_code set_link(std::string_view vm, bool up, std::string& why) override {
        calls.push_back("link");
        for (auto& v : vm_list) {
            if (v.name == vm || (v.mac && ankanet::wire::to_string(*v.mac) == vm)) {
                v.link_up = up;
                links.push_back({std::string{vm}, up});
                return {};
            }
        }
        why = "no VM " + std::string{vm};
        return std::make_error_code(std::errc::no_such_device);
    }
};

json ask(fake_target& target, std::string_view line) {
    const auto response = ankanetd::handle_request(line, target);
    INFO(response);
    REQUIRE(response.find('\n') == std::string::npos);
    auto parsed = json::parse(response, nullptr, false);
    REQUIRE(!parsed.is_discarded());
    REQUIRE(parsed.is_object());
    REQUIRE(parsed.contains("id"));
    REQUIRE(parsed["ok"].is_boolean());
    if (!parsed["ok"].get<bool>()) REQUIRE(parsed["error"].is_string());
    return parsed;
}

/// The error message of a refused request (the test fails when it was not refused).
std::string refusal(fake_target& target, std::string_view line) {
    const auto response = ask(target, line);
    INFO(line);
    REQUIRE(response["ok"] == false);
    return response["error"].get<std::string>();
}

ankanetd::vm_status vm1() {
    ankanetd::vm_status vm;
    vm.name = "netns:/run/netns/vm1:eth0";
    vm.backend = "tap";
    vm.mac = *ankanet::wire::mac_address::parse("52:54:00:00:00:01");
    vm.address = ankanet::wire::ipv4_address{192, 168, 64, 2};
    vm.hostname = "vm1";
    vm.lease_expires = 1'800'000'000;
    vm.frames_in = 10;
    vm.frames_out = 20;
    vm.dropped = 1;
    return vm;
}

} // namespace

TEST_CASE("forward.list lists every forward with its numbers, text and connections") {
    fake_target target;
    REQUIRE(ask(target, R"({"id":1,"command":"forward.list"})")["forwards"] == json::array());
    std::string why;
    REQUIRE(target.table.add(*fwd::parse_rule("tcp:127.0.0.1:8080:80@vm1")));
    REQUIRE(target.table.add(*fwd::parse_rule("udp:0.0.0.0:5000-5002:6000@52:54:00:00:00:01")));
    REQUIRE(target.table.add(*fwd::parse_rule("2222:22")));
    const auto response = ask(target, R"({"id":2,"command":"forward.list"})");
    REQUIRE(response["ok"] == true);
    const auto& list = response["forwards"];
    REQUIRE(list.size() == 3);
    REQUIRE(list[0].dump() ==
            R"({"id":1,"protocol":"tcp","host_address":"127.0.0.1","host_port":8080,"host_port_end":8080,"guest_port":80,)"
            R"("guest_port_end":80,"vm":"vm1","text":"tcp:127.0.0.1:8080:80@vm1","connections":10})");
    REQUIRE(list[1]["protocol"] == "udp");
    REQUIRE(list[1]["host_address"] == "0.0.0.0");
    REQUIRE(list[1]["host_port_end"] == 5002);
    REQUIRE(list[1]["guest_port_end"] == 6002);
    REQUIRE(list[1]["vm"] == "52:54:00:00:00:01");
    REQUIRE(list[1]["text"] == "udp:0.0.0.0:5000-5002:6000-6002@52:54:00:00:00:01");
    REQUIRE(list[2]["vm"].is_null());
    REQUIRE(list[2]["text"] == "tcp:127.0.0.1:2222:22");
    REQUIRE(refusal(target, R"({"command":"forward.list","verbose":true})").find("unknown field \"verbose\"") != std::string::npos);
}

TEST_CASE("forward.add takes the text form and answers the forward it added") {
    fake_target target;
    const auto response = ask(target, R"({"id":"a","command":"forward.add","forward":"tcp:127.0.0.1:8080:80@vm1"})");
    REQUIRE(response["ok"] == true);
    REQUIRE(response["id"] == "a");
    REQUIRE(response["forward"]["id"] == 1);
    REQUIRE(response["forward"]["text"] == "tcp:127.0.0.1:8080:80@vm1");
    REQUIRE(response["forward"]["connections"] == 0);
    REQUIRE(target.calls == std::vector<std::string>{"add tcp:127.0.0.1:8080:80@vm1"});
    REQUIRE(target.table.find(1)->vm.name == "vm1");
}

TEST_CASE("forward.add takes the separate fields, with tcp and 127.0.0.1 by default") {
    fake_target target;
    auto response = ask(target, R"({"command":"forward.add","protocol":"udp","host_address":"0.0.0.0","host_port":5000,)"
                                R"("host_port_end":5009,"guest_port":6000,"guest_port_end":6009,"vm":"52:54:00:00:00:01"})");
    REQUIRE(response["ok"] == true);
    REQUIRE(response["forward"]["text"] == "udp:0.0.0.0:5000-5009:6000-6009@52:54:00:00:00:01");
    REQUIRE(target.table.find(1)->vm.mac.has_value());

    response = ask(target, R"({"command":"forward.add","host_port":8080,"guest_port":80})");
    REQUIRE(response["forward"]["text"] == "tcp:127.0.0.1:8080:80");
    REQUIRE(response["forward"]["vm"].is_null());
    response = ask(target, R"({"command":"forward.add","host_port":8081,"guest_port":80,"vm":null})");
    REQUIRE(response["forward"]["vm"].is_null());
    response = ask(target, R"({"command":"forward.add","host_port":8082,"guest_port":80,"vm":"qemu:/run/vm.sock"})");
    REQUIRE(response["forward"]["vm"] == "qemu:/run/vm.sock");
}

TEST_CASE("forward.add refusals name what is wrong") {
    fake_target target;
    const auto has = [](const std::string& message, std::string_view part) {
        INFO(message);
        return message.find(part) != std::string::npos;
    };
    CHECK(has(refusal(target, R"({"command":"forward.add"})"), "needs \"host_port\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80})"), "needs \"guest_port\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":"80","guest_port":80})"),
              "\"host_port\" must be a whole number from 1 to 65535, not the string \"80\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":70000,"guest_port":80})"), "not 70000"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":0,"guest_port":80})"), "\"host_port\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":-1,"guest_port":80})"), "not -1"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80.5,"guest_port":80})"), "not 80.5"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":1e300,"guest_port":80})"), "\"host_port\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":184467440737095516160,"guest_port":80})"), "\"host_port\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"guest_port":[80]})"), "\"guest_port\" must be a whole number from 1 to 65535, not an array"));
    CHECK(has(refusal(target, R"({"command":"forward.add","protocol":"sctp","host_port":80,"guest_port":80})"), "\"protocol\" must be \"tcp\" or \"udp\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","protocol":6,"host_port":80,"guest_port":80})"), "\"protocol\" must be a string, not 6"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_address":"localhost","host_port":80,"guest_port":80})"), "\"host_address\" must be an IPv4 address"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_address":"224.0.0.1","host_port":80,"guest_port":80})"), "not an address to listen on"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"host_port_end":70,"guest_port":80})"), "ends before it starts"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"host_port_end":90,"guest_port":65530})"), "runs past 65535"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"host_port_end":90,"guest_port":80,"guest_port_end":85})"),
              "\"guest_port_end\" 85 does not match the host range of 11 ports"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"guest_port":80,"vm":""})"), "\"vm\" must be a VM's MAC or name"));
    CHECK(has(refusal(target, R"({"command":"forward.add","host_port":80,"guest_port":80,"vm":5})"), "\"vm\" must be"));
    CHECK(has(refusal(target, R"({"command":"forward.add","hostport":80,"guest_port":80})"), "unknown field \"hostport\""));
    CHECK(has(refusal(target, R"({"command":"forward.add","forward":"8080:80","host_port":80})"), "not both"));
    CHECK(has(refusal(target, R"({"command":"forward.add","forward":"tcp:8080"})"), "forward \"tcp:8080\": \"tcp\" is not a port"));
    CHECK(has(refusal(target, R"({"command":"forward.add","forward":"8080:99999"})"), "\"99999\" is not a port"));
    CHECK(has(refusal(target, R"({"command":"forward.add","forward":80})"), "\"forward\" must be a string, not 80"));
    CHECK(has(refusal(target, fmt::format(R"({{"command":"forward.add","forward":"{}"}})", std::string(2000, '1'))), "2000 bytes long"));
    CHECK(target.calls.empty()); // nothing malformed reached the target

    // The target's own refusal comes back as it said it.
    REQUIRE(ask(target, R"({"command":"forward.add","forward":"8080:80"})")["ok"] == true);
    CHECK(has(refusal(target, R"({"command":"forward.add","forward":"8080:81"})"), "is claimed by forward 1 (tcp:127.0.0.1:8080:80)"));
}

TEST_CASE("forward.remove by id and by text") {
    fake_target target;
    REQUIRE(target.table.add(*fwd::parse_rule("8080:80@vm1")));
    REQUIRE(target.table.add(*fwd::parse_rule("udp:5353:53")));
    REQUIRE(target.table.add(*fwd::parse_rule("9000-9001:9000")));

    auto response = ask(target, R"({"id":7,"command":"forward.remove","forward_id":1})");
    REQUIRE(response["ok"] == true);
    REQUIRE(response["forward_id"] == 1);
    REQUIRE(target.table.find(1) == nullptr);
    REQUIRE(target.calls.back() == "remove 1");

    // The text is read as a rule and compared with the target's rules, so any spelling matches.
    response = ask(target, R"({"command":"forward.remove","forward":"udp:127.0.0.1:5353:53"})");
    REQUIRE(response["forward_id"] == 2);
    response = ask(target, R"({"command":"forward.remove","forward":"tcp:9000-9001:9000-9001"})");
    REQUIRE(response["forward_id"] == 3);
    REQUIRE(target.table.size() == 0);

    CHECK(refusal(target, R"({"command":"forward.remove","forward_id":1})") == "forward 1: no such forward");
    CHECK(refusal(target, R"({"command":"forward.remove","forward":"8080:80@vm1"})") ==
          "no forward tcp:127.0.0.1:8080:80@vm1 (forward.list shows them)");
    CHECK(refusal(target, R"({"command":"forward.remove"})").find("give one of \"forward_id\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":"forward.remove","forward_id":1,"forward":"8080:80"})").find("give one of") != std::string::npos);
    CHECK(refusal(target, R"({"command":"forward.remove","forward_id":4294967296})").find("from 0 to 4294967295") != std::string::npos);
    CHECK(refusal(target, R"({"command":"forward.remove","forward_id":"1"})").find("not the string \"1\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":"forward.remove","forward":"x"})").find("forward \"x\"") != std::string::npos);
}

TEST_CASE("vm.list reports every VM, null for what is not known") {
    fake_target target;
    target.vm_list.push_back(vm1());
    ankanetd::vm_status bare;
    bare.name = "qemu:/run/vm.sock#1";
    bare.backend = "qemu-stream";
    bare.link_up = false;
    target.vm_list.push_back(bare);
    const auto response = ask(target, R"({"command":"vm.list"})");
    REQUIRE(response["vms"].size() == 2);
    REQUIRE(response["vms"][0].dump() ==
            R"({"name":"netns:/run/netns/vm1:eth0","backend":"tap","mac":"52:54:00:00:00:01","ip":"192.168.64.2","hostname":"vm1",)"
            R"("lease_expires":1800000000,"link":"up","counters":{"frames_in":10,"frames_out":20,"dropped":1}})");
    const auto& second = response["vms"][1];
    REQUIRE(second["mac"].is_null());
    REQUIRE(second["ip"].is_null());
    REQUIRE(second["hostname"] == "");
    REQUIRE(second["lease_expires"].is_null());
    REQUIRE(second["link"] == "down");
}

TEST_CASE("lease.list reports every lease, with the VM holding it now or null for one that is gone") {
    class leasing_target : public fake_target {
    public:
        std::vector<ankanetd::lease_status> leases() override {
            return {{ankanet::wire::ipv4_address{192, 168, 64, 2}, *ankanet::wire::mac_address::parse("52:54:00:00:00:01"), "vm1",
                     1800000000, "netns:/run/netns/vm1:eth0"},
                    {ankanet::wire::ipv4_address{192, 168, 64, 3}, *ankanet::wire::mac_address::parse("52:54:00:00:00:02"), "",
                     1800000060, std::nullopt}};
        }
    } target;
    const auto response = ask(target, R"({"command":"lease.list"})");
    REQUIRE(response["leases"].size() == 2);
    CHECK(response["leases"][0].dump() ==
          R"({"ip":"192.168.64.2","mac":"52:54:00:00:00:01","hostname":"vm1","expires":1800000000,"vm":"netns:/run/netns/vm1:eth0"})");
    CHECK(response["leases"][1]["vm"].is_null());
    CHECK(refusal(target, R"({"command":"lease.list","all":true})").find("all") != std::string::npos);
    // A target without DHCP (the default) lists none.
    fake_target plain;
    CHECK(ask(plain, R"({"command":"lease.list"})")["leases"] == json::array());
}

TEST_CASE("a port name that is not UTF-8 is still answered, as valid JSON") {
    fake_target target;
    auto vm = vm1();
    vm.name = "netns:\xff\xfe:eth0";
    vm.hostname = "a\nb\x1b[31m";
    target.vm_list.push_back(vm);
    const auto response = ankanetd::handle_request(R"({"command":"vm.list"})", target);
    REQUIRE(response.find('\n') == std::string::npos);
    const auto parsed = json::parse(response);
    REQUIRE(parsed["vms"][0]["hostname"] == "a\nb\x1b[31m");
    REQUIRE(parsed["vms"][0]["name"] == "netns:\xef\xbf\xbd\xef\xbf\xbd:eth0");
}

TEST_CASE("vm.link by name or MAC") {
    fake_target target;
    target.vm_list.push_back(vm1());
    auto response = ask(target, R"({"command":"vm.link","vm":"netns:/run/netns/vm1:eth0","up":false})");
    REQUIRE(response["ok"] == true);
    REQUIRE(response["vm"] == "netns:/run/netns/vm1:eth0");
    REQUIRE(response["link"] == "down");
    REQUIRE(!target.vm_list[0].link_up);
    response = ask(target, R"({"command":"vm.link","vm":"52:54:00:00:00:01","up":true})");
    REQUIRE(response["link"] == "up");
    REQUIRE(target.vm_list[0].link_up);
    REQUIRE(target.links.size() == 2);

    CHECK(refusal(target, R"({"command":"vm.link","vm":"vm9","up":true})") == "no VM vm9");
    CHECK(refusal(target, R"({"command":"vm.link","up":true})").find("needs \"vm\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":"vm.link","vm":"","up":true})").find("needs \"vm\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":"vm.link","vm":"vm1"})").find("needs \"up\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":"vm.link","vm":"vm1","up":"yes"})") == "\"up\" must be true or false, not the string \"yes\"");
    CHECK(refusal(target, R"({"command":"vm.link","vm":"vm1","up":1})") == "\"up\" must be true or false, not 1");
    CHECK(refusal(target, R"({"command":"vm.link","vm":{},"up":true})") == "\"vm\" must be a string, not an object");
}

TEST_CASE("the id is echoed whatever it is, null when absent or unreadable") {
    fake_target target;
    CHECK(ask(target, R"({"id":42,"command":"vm.list"})")["id"] == 42);
    CHECK(ask(target, R"({"id":"req-1","command":"vm.list"})")["id"] == "req-1");
    CHECK(ask(target, R"({"id":{"a":[1,2.5,null]},"command":"vm.list"})")["id"] == json::parse(R"({"a":[1,2.5,null]})"));
    CHECK(ask(target, R"({"command":"vm.list"})")["id"].is_null());
    CHECK(ask(target, R"({"id":-3,"command":"nope"})")["id"] == -3); // refused requests too
    CHECK(ask(target, R"({"id":5,"command":)")["id"].is_null());     // not JSON: no id to read
    // Key order of the answer: id and ok first.
    CHECK(ankanetd::handle_request(R"({"command":"vm.list","id":1})", target).rfind(R"({"id":1,"ok":true,)", 0) == 0);
}

TEST_CASE("malformed requests are refused, saying what is wrong") {
    fake_target target;
    CHECK(refusal(target, "").find("the request is not JSON") == 0);
    CHECK(refusal(target, "{\"command\":").find("the request is not JSON: parse error") == 0);
    CHECK(refusal(target, "hello").find("not JSON") != std::string::npos);
    CHECK(refusal(target, std::string_view{"{\"command\":\"vm.list\"}\0", 22}).find("not JSON") != std::string::npos);
    CHECK(refusal(target, "{\"command\":\"vm.\xff\"}").find("not JSON") != std::string::npos); // invalid UTF-8
    CHECK(refusal(target, "[1,2]") == R"(a request is a JSON object ({"id": ..., "command": ...}), not an array)");
    CHECK(refusal(target, "\"forward.list\"").find("not the string") != std::string::npos);
    CHECK(refusal(target, "17").find("not 17") != std::string::npos);
    CHECK(refusal(target, "{}").find("names no \"command\"") != std::string::npos);
    CHECK(refusal(target, R"({"command":7})") == "\"command\" must be a string, not 7");
    CHECK(refusal(target, R"({"command":"forward.lsit"})").find("unknown command \"forward.lsit\" (forward.list") == 0);
    CHECK(refusal(target, fmt::format(R"({{"command":"{}"}})", std::string(10000, 'x'))).size() < 200); // echoed text is cut
    CHECK(refusal(target, std::string(100000, '[')) == "the request nests deeper than 32 levels");
    CHECK(refusal(target, std::string(33, '[') + std::string(33, ']')) == "the request nests deeper than 32 levels");
    // Brackets inside strings are not nesting.
    CHECK(ask(target, fmt::format(R"({{"id":"{}\"{}","command":"vm.list"}})", std::string(100, '['), std::string(100, '{')))["ok"] == true);
    CHECK(ask(target, fmt::format("{{\"id\":{}1{},\"command\":\"vm.list\"}}", std::string(31, '['), std::string(31, ']')))["ok"] == true);
    CHECK(target.calls == std::vector<std::string>{"vms", "vms"});
}

TEST_CASE("a target that throws gets an error response, not an exception") {
    struct throwing_target final : fake_target {
        std::vector<ankanetd::vm_status> vms() override { throw std::runtime_error("boom"); }
    } target;
    CHECK(refusal(target, R"({"id":3,"command":"vm.list"})") == "internal error: boom");
    CHECK(ask(target, R"({"id":3,"command":"vm.list"})")["id"] == 3);
}
