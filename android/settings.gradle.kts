// The Kotlin layer of Ferry. `:core` is the JVM library: the generated uniffi bindings
// (../bindings/kotlin) plus the idiomatic facade in core/src/main/kotlin, tested on a plain JVM
// against the host build of the Rust library (`./gradlew :core:test`; android/test-jvm.sh does the
// same without Gradle).
pluginManagement {
    repositories {
        gradlePluginPortal()
        mavenCentral()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        mavenCentral()
    }
}

rootProject.name = "ferry-android"

include(":core")
