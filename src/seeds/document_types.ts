// The records of DocumentStore's audit log and the options of its actions,
// shared by DocumentStore and both of its storages (files and a backend).

/** One entry of a document's audit log (seed 004's `AuditEvent`). */
export interface AuditEvent {
  /** A unique id (a UUID). */
  action_id: string;
  /** The document it concerns. */
  document_id: string;
  /** When, as an ISO 8601 string in UTC. */
  ts: string;
  /** Who did it. */
  actor: string;
  /** `"save"`, `"update"` or `"restore"`. */
  action_type: string;
  /** Details: the backup made of the previous version, the backup restored. */
  payload: Record<string, unknown>;
}

/** Who changes a document, for its audit log. */
export interface DocumentActionOptions {
  /**
   * The actor recorded in the audit event.
   *
   * @default {"lockbox"}
   */
  actor?: string;
}
