// Shapes of the Spine API responses the app reads (see docs/*.md for each route).

export interface Me {
  object: "principal";
  subject: string;
  credential: "api_key" | "jwt";
  api_key_id: string | null;
  tenant: string | null;
  scopes: string[];
  tier: string;
  admin: boolean;
}

export interface UsageNumbers {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
  cost_usd: number;
}

export interface Page<T> {
  object: "list";
  data: T[];
  has_more: boolean;
  first_id?: string | null;
  last_id?: string | null;
}

export interface UsageReport {
  object: "usage.report";
  start: string;
  end: string;
  totals: UsageNumbers;
  by_model?: Page<UsageNumbers & { model: string }>;
  by_day?: Page<UsageNumbers & { date: string }>;
  by_key?: Page<UsageNumbers & { api_key_id: string | null }>;
}

export interface ModelInfo {
  id: string;
  object: "model";
  provider: string;
  owned_by: string;
  context_window: number | null;
  max_output_tokens: number | null;
  pricing: { unit: string; input: number; output: number; cached_input: number };
  capabilities: string[];
  aliases: string[];
  fallbacks: string[];
  description: string | null;
  resolves_to?: string;
  profile?: { name: string; parameters: Record<string, unknown> };
}

export interface WorkerModel {
  id: string;
  model: string;
  state: string;
  slots: number;
  in_flight: number;
  queued: number;
  memory_bytes: number | null;
  pid: number | null;
  loaded_at: number | null;
  idle_seconds: number | null;
  last_error: string | null;
  context_size: number;
}

export interface ApiKey {
  object: "api_key";
  id: string;
  name: string;
  prefix: string;
  principal: string | null;
  tenant: string | null;
  scopes: string[];
  tier: string;
  created_at: number | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  limits: {
    rpm: number | null;
    tpm: number | null;
    daily_budget_usd: string | null;
    monthly_budget_usd: string | null;
  };
  key?: string;
}

export interface ChatSession {
  id: string;
  object: "chat.session";
  title: string | null;
  model: string;
  system_prompt: string | null;
  message_count: number;
  created_at: number;
  updated_at: number;
}

export interface SessionMessage {
  id: string;
  role: "user" | "assistant" | "tool";
  content: unknown;
  tokens: number | null;
  request_id: string | null;
  created_at: number;
}

export interface PromptVariable {
  name: string;
  default?: string | null;
  description?: string | null;
  required?: boolean;
}

export interface PromptVersion {
  version: number;
  template: string;
  variables: PromptVariable[];
  model: string | null;
  parameters: Record<string, unknown>;
  created_at: number;
  labels?: string[];
}

export interface Prompt {
  id: string;
  object: "prompt";
  slug: string | null;
  name: string | null;
  description: string | null;
  latest_version: number;
  labels: Record<string, number>;
  version?: PromptVersion;
  created_at: number;
  updated_at: number;
}

export interface LatencyFigures {
  requests: number;
  errors: number;
  error_rate: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
}

export interface LatencyReport {
  object: "latency.report";
  totals: LatencyFigures;
  by_provider: (LatencyFigures & { provider: string })[];
  by_model: (LatencyFigures & { model: string })[];
}

export interface ModelDeployments {
  model: string;
  provider: string;
  deployments: {
    name: string;
    provider: string;
    model: string;
    weight: number;
    cooldown: {
      cooling: boolean;
      failures: number;
      cooled_until: number | null;
      last_error: string | null;
    } | null;
  }[];
}
