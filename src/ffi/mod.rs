//! The uniffi surface (filled in by the FFI layer).
