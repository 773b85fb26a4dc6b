// The ledger's tables, in step with migrations/sqlite (see diesel.toml).

diesel::table! {
    members (id) {
        id -> BigInt,
        vip_accountno -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    trades (id) {
        id -> BigInt,
        trade_no -> Text,
        out_trade_no -> Text,
        request_fingerprint -> Text,
        member_id -> BigInt,
        store_code -> Text,
        invoice_id -> Text,
        currency -> Text,
        total_amount_minor -> BigInt,
        payment_amount_minor -> BigInt,
        payment_method -> Text,
        sales_time -> Text,
        sales_at_ms -> BigInt,
        submit_time -> Text,
        approval_time -> Text,
        burn_point -> BigInt,
        resource -> Text,
        remark -> Text,
        receipt_image_urls -> Text,
        payment_image_urls -> Text,
        ruleset_version -> Text,
        created_at_ms -> BigInt,
        post_fee_minor -> BigInt,
        discount_minor -> BigInt,
        tier -> Text,
    }
}

diesel::table! {
    lots (id) {
        id -> BigInt,
        member_id -> BigInt,
        trade_id -> BigInt,
        point_type -> Text,
        campaign_code -> Text,
        remark -> Text,
        expire_type -> Text,
        expire_date -> Nullable<Text>,
        expires_at_ms -> Nullable<BigInt>,
        available_at_ms -> BigInt,
        points -> BigInt,
        remaining -> BigInt,
        ruleset_version -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    entries (id) {
        id -> BigInt,
        member_id -> BigInt,
        lot_id -> BigInt,
        trade_id -> Nullable<BigInt>,
        refund_id -> Nullable<BigInt>,
        kind -> Text,
        points -> BigInt,
        effective_at_ms -> BigInt,
        created_at_ms -> BigInt,
        point_type -> Text,
        campaign_code -> Text,
        trade_no -> Text,
        out_trade_no -> Text,
    }
}

diesel::table! {
    rulesets (version) {
        version -> Text,
        sources -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    refunds (id) {
        id -> BigInt,
        out_refund_no -> Text,
        request_fingerprint -> Text,
        trade_id -> BigInt,
        member_id -> BigInt,
        refund_amount_minor -> BigInt,
        refund_time -> Text,
        burn_returned -> BigInt,
        shortfall_policy -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    refund_lines (id) {
        id -> BigInt,
        refund_id -> BigInt,
        lot_id -> BigInt,
        points -> BigInt,
        shortfall -> BigInt,
        owed -> BigInt,
        from_grant -> BigInt,
        from_expired -> BigInt,
    }
}

diesel::table! {
    refund_takes (id) {
        id -> BigInt,
        refund_line_id -> BigInt,
        lot_id -> BigInt,
        points -> BigInt,
        restored -> BigInt,
    }
}

diesel::table! {
    refund_settlements (id) {
        id -> BigInt,
        refund_line_id -> BigInt,
        returning_refund_id -> BigInt,
        points -> BigInt,
        effective_at_ms -> BigInt,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    debt_movements (id) {
        id -> BigInt,
        refund_line_id -> BigInt,
        kind -> Text,
        points -> BigInt,
        paid_by_lot_id -> Nullable<BigInt>,
        effective_at_ms -> BigInt,
        created_at_ms -> BigInt,
        restored -> BigInt,
    }
}

diesel::table! {
    trade_lines (id) {
        id -> BigInt,
        trade_id -> BigInt,
        line_no -> BigInt,
        sku -> Text,
        name -> Text,
        quantity -> BigInt,
        amount_minor -> BigInt,
    }
}

diesel::table! {
    campaign_budgets (campaign_code) {
        campaign_code -> Text,
        used -> BigInt,
    }
}

diesel::table! {
    campaign_budget_periods (campaign_code, period) {
        campaign_code -> Text,
        period -> Text,
        used -> BigInt,
    }
}

diesel::table! {
    member_identities (id) {
        id -> BigInt,
        member_id -> BigInt,
        kind -> Text,
        value -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    member_profiles (member_id) {
        member_id -> BigInt,
        name -> Nullable<Text>,
        nick_name -> Nullable<Text>,
        gender -> Nullable<Text>,
        country -> Nullable<Text>,
        province -> Nullable<Text>,
        city -> Nullable<Text>,
        updated_at_ms -> BigInt,
        birthday -> Nullable<Text>,
    }
}

diesel::table! {
    external_orders (id) {
        id -> BigInt,
        source -> Text,
        external_id -> Text,
        trade_id -> Nullable<BigInt>,
        status -> Text,
        updated_at -> Text,
        body -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    request_nonces (mchid, nonce) {
        mchid -> Text,
        nonce -> Text,
        seen_at_ms -> BigInt,
    }
}

diesel::table! {
    card_records (id) {
        id -> BigInt,
        kind -> Text,
        serial_no -> Text,
        card_code -> Text,
        card_template_id -> Text,
        member_id -> BigInt,
        item_id -> Text,
        record_type -> Text,
        count -> BigInt,
        amount -> Nullable<BigInt>,
        occurred_at -> Text,
        body -> Text,
        trade_id -> Nullable<BigInt>,
        created_at_ms -> BigInt,
    }
}

diesel::joinable!(trades -> members (member_id));
diesel::joinable!(member_identities -> members (member_id));
diesel::joinable!(trade_lines -> trades (trade_id));
diesel::joinable!(refunds -> trades (trade_id));
diesel::joinable!(refund_lines -> refunds (refund_id));
diesel::joinable!(refund_lines -> lots (lot_id));
diesel::joinable!(debt_movements -> refund_lines (refund_line_id));
diesel::joinable!(refund_takes -> refund_lines (refund_line_id));
diesel::joinable!(refund_settlements -> refund_lines (refund_line_id));
diesel::joinable!(lots -> members (member_id));
diesel::joinable!(lots -> trades (trade_id));
diesel::joinable!(entries -> lots (lot_id));

diesel::allow_tables_to_appear_in_same_query!(
    debt_movements,
    refund_takes,
    refund_settlements,
    members,
    trades,
    lots,
    entries,
    rulesets,
    refunds,
    refund_lines,
    trade_lines,
    campaign_budgets,
    campaign_budget_periods,
    member_identities,
    member_profiles,
    external_orders,
    request_nonces,
    card_records
);
