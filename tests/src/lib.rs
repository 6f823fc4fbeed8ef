//! Cross-crate integration, statistical and property tests of `diffsmc`; the tests live in
//! `tests/*.rs`. This library is empty on purpose.
