// Error codes by what a caller does about them: the kind of each code's band, and stable numbers.

package dev.ferry

import dev.ferry.ffi.ErrorCode

/**
 * What kind of trouble an [ErrorCode] is, by what the caller does about it. Each kind is one band
 * of code numbers.
 */
enum class ErrorKind {
    /** 1xxx: the call or request was invalid; fix the input. */
    INVALID_INPUT,

    /** 2xxx: network, HTTP or Range protocol trouble; often worth retrying later. */
    NETWORK,

    /** 3xxx: local storage (space, permissions, the task table). */
    STORAGE,

    /** 4xxx: the bytes did not verify. */
    INTEGRITY,

    /** 5xxx: the task or the manager was stopped. */
    STOPPED,

    /** 9xxx: a bug in Ferry; please report it. */
    INTERNAL,
}

/** The stable number of this code (1001, 2004, ...), as stored or logged by apps. */
val ErrorCode.number: Int get() = value.toInt()

/** The kind of this code, from its band. */
val ErrorCode.kind: ErrorKind
    get() = when (number / 1000) {
        1 -> ErrorKind.INVALID_INPUT
        2 -> ErrorKind.NETWORK
        3 -> ErrorKind.STORAGE
        4 -> ErrorKind.INTEGRITY
        5 -> ErrorKind.STOPPED
        else -> ErrorKind.INTERNAL
    }

/** The code with this stable [number], or `null` for a number this version does not know. */
fun ErrorCode.Companion.fromNumber(number: Int): ErrorCode? = ErrorCode.entries.firstOrNull { it.number == number }
