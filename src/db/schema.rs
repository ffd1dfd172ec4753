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
        medians -> Text,
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
    idempotency_keys (project, principal, idem_key) {
        project -> Text,
        principal -> Text,
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
    key_changes (id) {
        id -> Integer,
        n -> BigInt,
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

diesel::table! {
    verdicts (id) {
        id -> Text,
        project -> Text,
        benchmark -> Text,
        run_id -> Text,
        status -> Text,
        counts -> Text,
        reasons -> Text,
        git_ref -> Nullable<Text>,
        git_sha -> Nullable<Text>,
        wall_ms_cv -> Nullable<Double>,
        flakiness_score -> Nullable<Double>,
        created_at -> BigInt,
    }
}

diesel::table! {
    verdict_counts (project, benchmark, status) {
        project -> Text,
        benchmark -> Text,
        status -> Text,
        n -> BigInt,
    }
}

diesel::table! {
    dependency_events (id) {
        id -> Text,
        project -> Text,
        benchmark -> Text,
        dep_name -> Text,
        old_version -> Nullable<Text>,
        new_version -> Nullable<Text>,
        metric -> Text,
        delta_pct -> Double,
        group_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    fleet_groups (group_key) {
        group_key -> Text,
        dep_name -> Text,
        old_version -> Nullable<Text>,
        new_version -> Nullable<Text>,
        project_count -> BigInt,
        entry_count -> BigInt,
        delta_sum -> Double,
        conf_rank -> BigInt,
        avg_delta -> Double,
        first_seen -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    fleet_members (group_key, project, benchmark) {
        group_key -> Text,
        project -> Text,
        benchmark -> Text,
        metric -> Text,
        delta_pct -> Double,
        event_id -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    run_stats (baseline_id, metric) {
        baseline_id -> Text,
        metric -> Text,
        project -> Text,
        benchmark -> Text,
        runner -> Text,
        run_id -> Text,
        git_sha -> Nullable<Text>,
        center -> Double,
        within_sd -> Double,
        n -> BigInt,
        resolution -> Double,
        created_at -> BigInt,
        failed -> Bool,
        deleted -> Bool,
    }
}

diesel::table! {
    gates (id) {
        id -> Text,
        project -> Text,
        status -> Text,
        is_final -> Bool,
        attempt -> BigInt,
        max_attempts -> BigInt,
        git_ref -> Nullable<Text>,
        git_sha -> Nullable<Text>,
        base_sha -> Nullable<Text>,
        runner -> Nullable<Text>,
        record -> Bool,
        metrics -> Text,
        settings -> Text,
        result -> Text,
        deadline -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    gate_runs (gate_id, attempt, benchmark) {
        gate_id -> Text,
        attempt -> BigInt,
        benchmark -> Text,
        run_id -> Text,
        runner -> Text,
        receipt -> Text,
        summaries -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    gate_benchmarks (project, benchmark) {
        project -> Text,
        benchmark -> Text,
    }
}

diesel::table! {
    failed_runs (project, benchmark, run_id) {
        project -> Text,
        benchmark -> Text,
        run_id -> Text,
        gate_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    gate_settings (project) {
        project -> Text,
        settings -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    backfill_state (task) {
        task -> Text,
        position -> Text,
        done -> Bool,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        project -> Text,
        benchmark -> Text,
        metric -> Text,
        source -> Text,
        gate_id -> Nullable<Text>,
        status -> Text,
        change_pct -> Double,
        git_sha -> Nullable<Text>,
        previous_git_sha -> Nullable<Text>,
        reason -> Nullable<Text>,
        link -> Nullable<Text>,
        duplicate_of -> Nullable<Text>,
        waiver_owner -> Nullable<Text>,
        waiver_max_change_pct -> Nullable<Double>,
        waiver_expires_at -> Nullable<BigInt>,
        triaged_by -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    quarantine (baseline_id) {
        baseline_id -> Text,
        project -> Text,
        benchmark -> Text,
        gate_id -> Text,
        alert_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    run_shifts (project, runner, metric, git_sha) {
        project -> Text,
        runner -> Text,
        metric -> Text,
        git_sha -> Text,
        shift -> Double,
        benchmarks -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    cp_series (project, benchmark, metric, runner) {
        project -> Text,
        benchmark -> Text,
        metric -> Text,
        runner -> Text,
        resume_index -> BigInt,
        resume_created_at -> BigInt,
        resume_baseline_id -> Text,
        runs -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    change_points (id) {
        id -> Text,
        project -> Text,
        benchmark -> Text,
        metric -> Text,
        runner -> Text,
        idx -> BigInt,
        baseline_id -> Text,
        git_sha -> Nullable<Text>,
        previous_git_sha -> Nullable<Text>,
        run_created_at -> BigInt,
        level_before -> Double,
        level_after -> Double,
        change_pct -> Double,
        p -> Double,
        strong -> Bool,
        settled -> Bool,
        alert_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    decisions (id) {
        id -> Text,
        project -> Text,
        scenario -> Nullable<Text>,
        status -> Text,
        verdict -> Text,
        accepted_rules -> Text,
        accepted -> Bool,
        review_required -> Bool,
        review_reasons -> Text,
        git_ref -> Nullable<Text>,
        git_sha -> Nullable<Text>,
        tradeoff_receipt -> Text,
        scenario_receipt -> Nullable<Text>,
        artifact_index -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    decision_rules (decision_id, rule) {
        decision_id -> Text,
        project -> Text,
        rule -> Text,
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
    verdicts,
    verdict_counts,
    dependency_events,
    fleet_groups,
    fleet_members,
    run_stats,
    gates,
    gate_runs,
    failed_runs,
    gate_settings,
    backfill_state,
    alerts,
    quarantine,
    run_shifts,
    cp_series,
    change_points,
    decisions,
    decision_rules,
);
