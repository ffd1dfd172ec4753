// One schema for both backends, written by hand (see diesel.toml): only types that
// `MultiConnection` shares.

diesel::table! {
    baselines (id) {
        id -> Text,
        project -> Text,
        benchmark -> Text,
        version -> Text,
        git_ref -> Nullable<Text>,
        git_sha -> Nullable<Text>,
        receipt -> Text,
        metadata -> Text,
        tags -> Text,
        content_hash -> Text,
        source -> Text,
        promoted_from -> Nullable<Text>,
        wall_ms_median -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    baseline_tags (baseline_id, tag) {
        baseline_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    benchmarks (project, benchmark) {
        project -> Text,
        benchmark -> Text,
        baseline_count -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (project, idem_key) {
        project -> Text,
        idem_key -> Text,
        request_hash -> Text,
        baseline_id -> Text,
        response -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        key_hash -> Text,
        key_prefix -> Text,
        description -> Text,
        role -> Text,
        project -> Text,
        pattern -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        ts -> BigInt,
        actor -> Text,
        action -> Text,
        resource_type -> Text,
        resource_id -> Text,
        project -> Text,
        metadata -> Text,
    }
}

diesel::joinable!(baseline_tags -> baselines (baseline_id));
diesel::allow_tables_to_appear_in_same_query!(
    baselines,
    baseline_tags,
    benchmarks,
    idempotency_keys,
    api_keys,
    audit_events,
);
