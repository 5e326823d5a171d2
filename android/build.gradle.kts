// Plugins are declared here once (not applied) so every module resolves the same versions.
plugins {
    alias(libs.plugins.kotlin.jvm) apply false
    alias(libs.plugins.android.library) apply false
}
