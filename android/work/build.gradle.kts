// :work — the Android adapters over :core's dev.ferry.work: a CoroutineWorker, a WorkManager
// scheduler, a user-initiated data transfer JobService (Android 14+) and the manifest entries they
// need. Every decision is in :core and tested on the JVM; this module only calls Android APIs.
//
// Built only when an Android SDK is configured (see settings.gradle.kts).
plugins {
    alias(libs.plugins.android.library)
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.ferry.work.android"
    compileSdk = 36
    defaultConfig {
        // WorkManager 2.11's own minimum.
        minSdk = 23
        consumerProguardFiles("consumer-rules.pro")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    // On Android, JNA comes as an AAR (with its libjnidispatch.so per ABI), not the desktop jar.
    api(project(":core")) {
        exclude(group = "net.java.dev.jna", module = "jna")
    }
    implementation("net.java.dev.jna:jna:${libs.versions.jna.get()}@aar")
    api(libs.androidx.work.runtime)
    implementation(libs.androidx.core)
}
