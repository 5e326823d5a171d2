// The Kotlin layer of Ferry. `:core` is the JVM library: the generated uniffi bindings
// (../bindings/kotlin) plus the idiomatic facade in core/src/main/kotlin and the decisions of the
// Android background layer (dev.ferry.work), tested on a plain JVM against the host build of the
// Rust library (`./gradlew :core:test`; android/test-jvm.sh does the same without Gradle).
// `:testing` is the loopback test server for apps' unit tests (dev.ferry.testing, plain JVM; the
// core tests use it too).
// `:work` is the Android library of thin adapters (WorkManager, JobScheduler); it needs an Android
// SDK, so it is included only when one is configured (ANDROID_HOME or local.properties), and
// `:core` builds without one.
pluginManagement {
    repositories {
        google()
        gradlePluginPortal()
        mavenCentral()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "ferry-android"

include(":core")
include(":testing")

val androidSdk = System.getenv("ANDROID_HOME") ?: System.getenv("ANDROID_SDK_ROOT")
if (androidSdk != null || file("local.properties").exists()) {
    include(":work")
}
