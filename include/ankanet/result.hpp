/// @file
/// ankanet — result<T>: a value or the std::error_code that says why there is none.
///
/// C++20 has no std::expected; this is the small part of it ankanet needs on the per-packet path:
/// no exceptions, no allocation, and a value that cannot be read by accident when there is none
/// (value() on an error is a precondition violation: it aborts, in every build, rather than read
/// a value that is not there).
#pragma once

#include <ankanet/error.hpp>

#include <cassert>
#include <cstdlib>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace ankanet {

/// A value of type T, or the std::error_code that says why there is none.
template <class T>
class [[nodiscard]] result {
    static_assert(!std::is_reference_v<T>, "result<T> holds values");
    static_assert(!std::is_same_v<std::remove_cv_t<T>, std::error_code>, "result<error_code> is ambiguous");

public:
    /// Holds a copy of `value`.
    result(const T& value) : state_(std::in_place_index<0>, value) {}
    /// Holds `value`, moved in.
    result(T&& value) : state_(std::in_place_index<0>, std::move(value)) {}
    /// Holds `error`, which must not be empty.
    result(std::error_code error) : state_(std::in_place_index<1>, error) { assert(error); }
    /// Holds the error code of `error`.
    result(errc error) : result(make_error_code(error)) {}

    /// Whether it has value.
    bool has_value() const noexcept { return state_.index() == 0; }
    /// Whether it holds a value.
    explicit operator bool() const noexcept { return has_value(); }

    /// The value; aborts when there is none (a bug in the caller).
    T& value() & { return *checked_value(&state_); }
    /// The value; aborts when there is none (a bug in the caller).
    const T& value() const& { return *checked_value(&state_); }
    /// The value, moved out; aborts when there is none (a bug in the caller).
    T&& value() && { return std::move(*checked_value(&state_)); }

    /// The value, as value().
    T& operator*() & { return value(); }
    /// The value, as value().
    const T& operator*() const& { return value(); }
    /// The value, moved out, as value().
    T&& operator*() && { return std::move(*this).value(); }
    /// The value's members, as value().
    T* operator->() { return &value(); }
    /// The value's members, as value().
    const T* operator->() const { return &value(); }

    /// The error; an empty error_code when there is a value.
    std::error_code error() const noexcept {
        const auto* error = std::get_if<1>(&state_);
        return error ? *error : std::error_code{};
    }

    /// The value, or `fallback` converted to T when there is none.
    template <class U>
    T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

private:
    template <class State>
    static auto* checked_value(State* state) noexcept {
        auto* value = std::get_if<0>(state);
        if (value == nullptr) [[unlikely]] {
            std::abort(); // reading the value of an error: a bug in the caller, never input-driven
        }
        return value;
    }

    std::variant<T, std::error_code> state_;
};

} // namespace ankanet
