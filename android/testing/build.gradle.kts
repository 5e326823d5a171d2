// :testing — dev.ferry.testing, the loopback test server (with its faults) for apps' unit tests:
// a thin Kotlin wrapper over the generated TestServer in :core's bindings. Plain JVM, no Android
// SDK; depend on it from tests only (`testImplementation(project(":testing"))`). Like :core, it
// ships no native library: tests load the host build of libferry (see core/build.gradle.kts).
plugins {
    alias(libs.plugins.kotlin.jvm)
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    // Its API names :core's generated types (TestValidators) and FerryException.
    api(project(":core"))
    implementation(libs.kotlinx.coroutines.core)
}
